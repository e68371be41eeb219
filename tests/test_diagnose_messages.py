"""Verdict messages say which side of the know-nothing reference the loss is on."""
from archlab.diagnose.detectors import relative_to_reference


def test_a_loss_below_the_reference_reads_below():
    assert relative_to_reference(-0.04) == "only 4.0% below"
    assert relative_to_reference(0.0) == "only 0.0% below"


def test_a_loss_above_the_reference_reads_above_not_a_negative_drop():
    # a loss 12.7x the reference is +1167.9%, once printed as "-1167.9% below"
    text = relative_to_reference(11.679)
    assert text == "1167.9% above"
    assert "-" not in text
