"""The fault suite's set-ups: healthy twins, and faults from the published taxonomies injected
into them, on three user paths and five data sets (four kinds).

Each fault names its source (``Setup.source``):

* **H20**: Humbatova et al., "Taxonomy of real faults in deep learning systems", ICSE 2020
  (categories Model, Tensors & Inputs, Training: hyperparameters, loss, optimiser, training
  data quality, preprocessing);
* **AT**: the problem types of AUTOTRAINER (Zhang et al., ICSE 2021): vanishing gradient (VG),
  exploding gradient (EG), dying ReLU (DR), oscillating loss (OL), slow convergence (SC);
* **DD**: the conditions of DeepDiagnosis (Wardat et al., ICSE 2022): NaN/Inf, unchanged
  weights, saturated activation, dead node, loss not decreasing.

The suite was split ONCE into a development half (thresholds may be tuned on it) and a
held-out half (never tuned on), before any threshold was tuned: ``random.Random(14)``
shuffled the sorted names of the faulty set-ups and, separately, of the healthy ones, and the
first half (rounded up) of each became the development half. The result is written out below
(:data:`HELD_OUT`) so that adding set-ups later cannot move an old one between the halves;
``tests/test_fault_suite.py`` checks the rule still reproduces it.

On 2026-12-03 (session 8) ``label_noise`` was added to the ``plausible`` causes of the three
shuffled-label faults (source: "wrong labels"): the rule, as extended that day, names labels that
do not follow from their inputs, which is what these faults inject. Nothing else changed.
"""

from __future__ import annotations

import random

from torch import nn

from .fault_models import (
    LogFeatures,
    ResidualMLP,
    SequenceClassifier,
    SquashedNet,
    cnn,
    conv1d_net,
    mlp,
    negative_bias,
    scaled,
    zero_init,
)
from .faults import Setup, faulty

SPLIT_SEED = 14

# ------------------------------------------------------------------------ healthy twins -----
# Lightning path
L_DIGITS = Setup("h_l_digits_mlp", "ReLU MLP, Adam 1e-3, standardised inputs", "lightning",
                 "digits", lambda i, o, s: mlp(i, o))
L_MNIST = Setup("h_l_mnist_mlp", "ReLU MLP on mnist5k, Adam 1e-3", "lightning", "mnist5k",
                lambda i, o, s: mlp(i, o))
L_MNIST_CNN = Setup("h_l_mnist_cnn", "conv-BN-ReLU net, SGD+momentum 0.1", "lightning",
                    "mnist5k", lambda i, o, s: cnn(s[0], o), "sgd", 0.1, momentum=True, steps=200)
L_SYN = Setup("h_l_syn_tanh", "tanh MLP, SGD 0.05, Glorot-scale init", "lightning", "synthetic",
              lambda i, o, s: mlp(i, o, (64, 64), nn.Tanh), "sgd", 0.05)
L_SEQ = Setup("h_l_seq_gru", "GRU classifier, Adam 1e-2, batch 32", "lightning", "sequence",
              lambda i, o, s: SequenceClassifier(s[0], o, "gru"), "adam", 1e-2, batch=32)
L_TAB = Setup("h_l_tab_mlp", "ReLU MLP regression on standardised Friedman #1 targets",
              "lightning", "tabular", lambda i, o, s: mlp(i, o), steps=200)
HEALTHY = [
    L_DIGITS, L_MNIST, L_MNIST_CNN, L_SYN, L_SEQ, L_TAB,
    Setup("h_l_digits_cnn_leaky", "conv-BN-LeakyReLU net, Adam 1e-2", "lightning", "digits",
          lambda i, o, s: cnn(s[0], o, nn.LeakyReLU), lr=1e-2),
    Setup("h_l_mnist_residual", "residual ReLU MLP, Adam 1e-3", "lightning", "mnist5k",
          lambda i, o, s: ResidualMLP(i, o)),
    Setup("h_l_mnist_per_feature", "MLP on per-pixel standardised MNIST (values up to ~70)",
          "lightning", "mnist5k", lambda i, o, s: mlp(i, o), scaling="per_feature"),
    Setup("h_l_digits_loose_clip", "ReLU MLP, Adam 1e-3, gradient clipping at 5 (rarely binds)",
          "lightning", "digits", lambda i, o, s: mlp(i, o), clip=5.0),
]
# plain-loop path (HealthRecorder)
P_DIGITS = Setup("h_p_digits_mlp", "ReLU MLP, Adam 1e-3", "plain", "digits", lambda i, o, s: mlp(i, o))
P_DIGITS_SGD = Setup("h_p_digits_sgd", "ReLU MLP, SGD 0.1 with momentum", "plain", "digits",
                     lambda i, o, s: mlp(i, o), "sgd", 0.1, momentum=True)
P_DIGITS_CNN = Setup("h_p_digits_cnn", "conv-BN-ReLU net, Adam 1e-2", "plain", "digits",
                     lambda i, o, s: cnn(s[0], o), lr=1e-2)
P_TAB = Setup("h_p_tab_mlp", "ReLU MLP regression, Adam 3e-3", "plain", "tabular",
              lambda i, o, s: mlp(i, o), lr=3e-3, steps=200)
P_SEQ = Setup("h_p_seq_conv", "1-d conv-ReLU-pool net, Adam 3e-3", "plain", "sequence",
              lambda i, o, s: conv1d_net(s[0], o), lr=3e-3, batch=32)
P_SYN = Setup("h_p_syn_dropout", "ReLU MLP with dropout 0.5 (inflates the first losses)", "plain",
              "synthetic", lambda i, o, s: mlp(i, o, (128, 128), dropout=0.5))
HEALTHY += [
    P_DIGITS, P_DIGITS_SGD, P_DIGITS_CNN, P_TAB, P_SEQ, P_SYN,
    Setup("h_p_syn_cosine", "ReLU MLP, SGD 0.1 with a cosine schedule that reaches 0 at the end",
          "plain", "synthetic", lambda i, o, s: mlp(i, o), "sgd", 0.1, momentum=True,
          schedule="cosine"),
]
# archlab train path
A_DIGITS = Setup("h_a_digits_mlp", "archlab train: ReLU MLP, Adam 1e-3", "archlab", "digits",
                 lambda i, o, s: mlp(i, o))
A_MNIST = Setup("h_a_mnist_mlp", "archlab train: ReLU MLP on mnist5k, SGD 0.01", "archlab",
                "mnist5k", lambda i, o, s: mlp(i, o), "sgd", 0.01, momentum=True)
A_TAB = Setup("h_a_tab_mlp", "archlab train: ReLU MLP regression", "archlab", "tabular",
              lambda i, o, s: mlp(i, o), lr=3e-3, steps=200)
HEALTHY += [A_DIGITS, A_MNIST, A_TAB]

# ----------------------------------------------------------------------------- faults -------
DEAD = ("dying_relu", "vanishing_gradients", "loss_not_decreasing", "lr_too_low")
UNSTABLE = ("dying_relu", "oscillating_loss", "loss_not_decreasing", "vanishing_gradients",
            "nan_inf", "exploding_gradients", "lr_too_high")
FAULTS = [
    # --- lightning, digits
    faulty(L_DIGITS, "l_deep_sigmoid", "8 sigmoid hidden layers, plain SGD 0.1",
           ("vanishing_gradients",), "H20 Model/activation; AT VG",
           ("loss_not_decreasing", "lr_too_low", "saturated_activations"),
           model=lambda i, o, s: mlp(i, o, (32,) * 8, nn.Sigmoid), optimizer="sgd", lr=0.1),
    faulty(L_DIGITS, "l_lr_10", "SGD with learning rate 10", ("exploding_gradients", "lr_too_high",
           "nan_inf"), "H20 Hyperparameters/learning rate; AT EG", UNSTABLE, optimizer="sgd", lr=10.0),
    faulty(L_DIGITS, "l_zero_init", "every weight and bias initialised to 0",
           ("symmetric_init", "vanishing_gradients"),
           "H20 Model/weights initialisation; DD unchanged weight", DEAD,
           model=lambda i, o, s: zero_init(mlp(i, o))),
    faulty(L_DIGITS, "l_shuffled_labels", "training labels shuffled (no signal)",
           ("loss_not_decreasing", "overfitting"), "H20 Training data quality/wrong labels",
           ("lr_too_low", "label_noise"), labels="shuffle", ci_steps=110),
    faulty(L_DIGITS, "l_adam_lr_0.1", "Adam with learning rate 0.1", ("lr_too_high", "oscillating_loss"),
           "H20 Hyperparameters/learning rate; AT OL", UNSTABLE, lr=0.1),
    faulty(L_DIGITS, "l_softmax_before_ce", "softmax layer at the end, then cross entropy",
           ("probabilities_as_logits",), "H20 Model/activation of the last layer; H20 Loss",
           ("loss_not_decreasing", "lr_too_low", "vanishing_gradients"),
           model=lambda i, o, s: nn.Sequential(mlp(i, o), nn.Softmax(dim=1))),
    faulty(L_DIGITS, "l_overfit_small_data", "a wide MLP on 64 training examples", ("overfitting",),
           "H20 Training data quality/not enough data", (),
           model=lambda i, o, s: mlp(i, o, (512, 512)), train_limit=64, batch=32, steps=120,
           ci_steps=80),
    faulty(L_DIGITS, "l_raw255_digits", "digits rescaled to 0-255 and not standardised, SGD 0.01",
           ("unscaled_inputs",), "H20 Preprocessing/missing normalisation", UNSTABLE,
           scaling="raw255", optimizer="sgd", lr=0.01),
    faulty(L_DIGITS, "l_bn_batch_2", "batch-norm MLP trained with batches of 2",
           ("batchnorm_small_batch",), "H20 Hyperparameters/batch size", ("oscillating_loss",),
           model=lambda i, o, s: mlp(i, o, norm=True), batch=2),
    faulty(L_DIGITS, "l_sorted_labels", "training data sorted by label, not shuffled",
           ("unshuffled_data",), "H20 Training data/not shuffled",
           ("oscillating_loss", "lr_too_high", "exploding_gradients", "class_imbalance"),
           labels="sort"),
    # --- lightning, mnist5k
    faulty(L_MNIST, "l_negative_bias_relu", "ReLU layers with biases initialised at -4",
           ("dying_relu",), "AT DR; DD dead node", DEAD,
           model=lambda i, o, s: negative_bias(mlp(i, o, (128, 64)))),
    faulty(L_MNIST, "l_lr_1e-7", "Adam with learning rate 1e-7", ("lr_too_low",),
           "H20 Hyperparameters/learning rate too low; AT SC", ("loss_not_decreasing",), lr=1e-7,
           ci_steps=110),
    faulty(L_MNIST, "l_frozen_layers", "the first two linear layers have requires_grad=False",
           ("frozen_layers",), "DD unchanged weight", (),
           model=lambda i, o, s: mlp(i, o, (64, 64, 64)), freeze=2),
    faulty(L_MNIST, "l_not_in_optimizer", "only the last layer is passed to the optimizer",
           ("frozen_layers",), "H20 Optimiser/missing parameters; DD unchanged weight", (),
           optimize="head"),
    faulty(L_MNIST, "l_imbalanced", "classes 1-9 keep a twentieth of their training examples",
           ("class_imbalance",), "H20 Training data quality/unbalanced data", ()
           , labels="imbalance"),
    # --- lightning, mnist5k CNN
    faulty(L_MNIST_CNN, "l_cnn_linear", "conv-BN-avgpool-conv-BN without any activation",
           ("missing_nonlinearity",), "H20 Model/missing activation", (),
           model=lambda i, o, s: cnn(s[0], o, act=None)),
    faulty(L_MNIST_CNN, "l_clip_tight", "gradient_clip_val=1e-3 (every update scaled down)",
           ("clipping_too_tight",), "H20 Hyperparameters (gradient clipping); AT SC",
           ("loss_not_decreasing",), clip=1e-3, ci_steps=60),
    faulty(L_MNIST_CNN, "l_cnn_bn_batch_2", "conv-BN net trained with batches of 2",
           ("batchnorm_small_batch",), "H20 Hyperparameters/batch size", UNSTABLE, batch=2),
    # --- lightning, synthetic
    faulty(L_SYN, "l_saturated_tanh", "tanh MLP with weights initialised 8x too large",
           ("saturated_activations",), "DD saturated activation; H20 Model/weights initialisation",
           ("vanishing_gradients", "loss_not_decreasing", "lr_too_low"),
           model=lambda i, o, s: scaled(mlp(i, o, (64, 64), nn.Tanh), 8.0)),
    faulty(L_SYN, "l_nan_log", "a custom layer takes log() of ReLU outputs without an epsilon",
           ("nan_inf",), "DD NaN; H20 Model/layer properties", (),
           model=lambda i, o, s: nn.Sequential(nn.Linear(i, 32), nn.ReLU(), LogFeatures(),
                                               nn.Linear(32, o))),
    # --- lightning, sequences
    faulty(L_SEQ, "l_exploding_rnn", "ReLU RNN with recurrent gain 1.5 over 32 steps, SGD 0.01",
           ("exploding_gradients", "nan_inf"), "AT EG", UNSTABLE,
           model=lambda i, o, s: SequenceClassifier(s[0], o, "rnn", recurrent_gain=1.5),
           optimizer="sgd", lr=0.01),
    faulty(L_SEQ, "l_seq_linear", "an MLP without activations on the sequences",
           ("missing_nonlinearity",), "H20 Model/missing activation", ("loss_not_decreasing",),
           model=lambda i, o, s: mlp(i, o, (64, 64), act=None)),
    faulty(L_SEQ, "l_seq_shuffled_labels", "training labels shuffled", ("loss_not_decreasing",
           "overfitting"), "H20 Training data quality/wrong labels",
           ("lr_too_low", "label_noise"), labels="shuffle", ci_steps=110),
    # --- lightning, tabular regression
    faulty(L_TAB, "l_tab_huge_targets", "regression targets 1e4 times their standardised scale",
           ("unscaled_targets",), "H20 Preprocessing/missing normalisation (targets)",
           ("loss_not_decreasing", "lr_too_low"), target_scale=1e4),
    faulty(L_TAB, "l_tab_nan_targets", "three training targets are NaN", ("nan_inf",),
           "DD NaN; H20 Training data quality", (), nan_targets=3),
    faulty(L_TAB, "l_tab_sgd_lr_high", "SGD with learning rate 0.5", ("exploding_gradients",
           "lr_too_high", "nan_inf"), "H20 Hyperparameters/learning rate; AT EG", UNSTABLE,
           optimizer="sgd", lr=0.5),
    faulty(L_TAB, "l_tab_lr_collapse", "a step schedule (x0.01 every 10 steps) stepped per batch",
           ("lr_schedule_decayed",), "H20 Hyperparameters/learning rate schedule; AT SC",
           ("loss_not_decreasing", "lr_too_low"), schedule="collapse", ci_steps=60),
    # --- plain loop, digits
    faulty(P_DIGITS, "p_sigmoid_ce", "hand-written forward ends in torch.sigmoid, then cross entropy",
           ("probabilities_as_logits",), "H20 Model/activation of the last layer; H20 Loss",
           ("loss_not_decreasing",), model=lambda i, o, s: SquashedNet(mlp(i, o), "sigmoid")),
    faulty(P_DIGITS, "p_lr_collapse", "a step schedule (x0.01 every 10 steps) stepped per batch",
           ("lr_schedule_decayed",), "H20 Hyperparameters/learning rate schedule; AT SC",
           ("loss_not_decreasing", "lr_too_low"), schedule="collapse", ci_steps=60),
    faulty(P_DIGITS, "p_sorted_labels", "iterates the training data sorted by label",
           ("unshuffled_data",), "H20 Training data/not shuffled",
           ("oscillating_loss", "lr_too_high", "exploding_gradients", "class_imbalance"),
           labels="sort"),
    # over_regularisation listed since the detector exists (2026-12-02): it names this fault's
    # own taxonomy leaf; the loss symptom stays a right answer
    faulty(P_DIGITS, "p_weight_decay_huge", "Adam with L2 weight decay 1.0",
           ("over_regularisation", "loss_not_decreasing"),
           "H20 Training/regularisation too strong", ("lr_too_low",), weight_decay=1.0,
           ci_steps=110),
    faulty(P_DIGITS_SGD, "p_clip_tight", "clip_grad_norm_ to 1e-3 before every step (not declared)",
           ("clipping_too_tight",), "H20 Hyperparameters (gradient clipping); AT SC",
           ("loss_not_decreasing",), clip=1e-3, ci_steps=60),
    # --- plain loop, digits CNN
    faulty(P_DIGITS_CNN, "p_cnn_linear", "conv-BN-avgpool-conv-BN without any activation",
           ("missing_nonlinearity",), "H20 Model/missing activation", (),
           model=lambda i, o, s: cnn(s[0], o, act=None)),
    faulty(P_DIGITS_CNN, "p_cnn_bn_batch_2", "conv-BN net trained with batches of 2",
           ("batchnorm_small_batch",), "H20 Hyperparameters/batch size", UNSTABLE, batch=2),
    faulty(P_DIGITS_CNN, "p_cnn_adam_lr_0.5", "Adam with learning rate 0.5", ("lr_too_high",
           "oscillating_loss", "exploding_gradients"), "H20 Hyperparameters/learning rate; AT OL",
           UNSTABLE, lr=0.5),
    # --- plain loop, tabular regression
    faulty(P_TAB, "p_tab_huge_targets", "regression targets 1e4 times their standardised scale",
           ("unscaled_targets",), "H20 Preprocessing/missing normalisation (targets)",
           ("loss_not_decreasing", "lr_too_low"), target_scale=1e4),
    faulty(P_TAB, "p_tab_nan_inputs", "three training rows hold a NaN feature", ("nan_inf",),
           "DD NaN; H20 Training data quality", (), nan_inputs=3),
    faulty(P_TAB, "p_tab_not_in_optimizer", "only the last layer is passed to the optimizer",
           ("frozen_layers",), "H20 Optimiser/missing parameters", (), optimize="head"),
    faulty(P_TAB, "p_tab_linear", "an MLP without activations on a non-linear target",
           ("missing_nonlinearity",), "H20 Model/missing activation", (),
           model=lambda i, o, s: mlp(i, o, (64, 64), act=None)),
    # --- plain loop, sequences
    faulty(P_SEQ, "p_seq_linear_conv", "conv-avgpool-conv without any activation",
           ("missing_nonlinearity",), "H20 Model/missing activation", ("loss_not_decreasing",),
           model=lambda i, o, s: conv1d_net(s[0], o, act=None)),
    faulty(P_SEQ, "p_seq_sorted", "iterates the training sequences sorted by label",
           ("unshuffled_data",), "H20 Training data/not shuffled",
           ("oscillating_loss", "lr_too_high", "exploding_gradients", "class_imbalance"),
           labels="sort"),
    faulty(P_SEQ, "p_seq_lr_1e-7", "Adam with learning rate 1e-7", ("lr_too_low",),
           "H20 Hyperparameters/learning rate too low; AT SC", ("loss_not_decreasing",), lr=1e-7,
           ci_steps=110),
    # --- plain loop, synthetic
    faulty(P_SYN, "p_syn_shuffled_labels", "training labels shuffled", ("loss_not_decreasing",
           "overfitting"), "H20 Training data quality/wrong labels",
           ("lr_too_low", "label_noise"), labels="shuffle", ci_steps=110),
    faulty(P_SYN, "p_syn_dead_relu", "ReLU layers with biases initialised at -4", ("dying_relu",),
           "AT DR; DD dead node", DEAD,
           model=lambda i, o, s: negative_bias(mlp(i, o, (128, 128), dropout=0.5))),
    # --- archlab train
    faulty(A_DIGITS, "a_lr_10", "archlab train --optimizer sgd --lr 10", ("exploding_gradients",
           "lr_too_high", "nan_inf"), "H20 Hyperparameters/learning rate; AT EG", UNSTABLE,
           optimizer="sgd", lr=10.0),
    faulty(A_DIGITS, "a_deep_sigmoid", "8 sigmoid hidden layers, SGD 0.1", ("vanishing_gradients",),
           "H20 Model/activation; AT VG", ("loss_not_decreasing", "lr_too_low",
                                           "saturated_activations"),
           model=lambda i, o, s: mlp(i, o, (32,) * 8, nn.Sigmoid), optimizer="sgd", lr=0.1),
    faulty(A_MNIST, "a_clip_tight", "archlab train --clip 1e-3", ("clipping_too_tight",),
           "H20 Hyperparameters (gradient clipping); AT SC", ("loss_not_decreasing",), clip=1e-3,
           ci_steps=60),
    faulty(A_MNIST, "a_sigmoid_end", "a module whose forward ends in torch.sigmoid",
           ("probabilities_as_logits",), "H20 Model/activation of the last layer",
           ("loss_not_decreasing",), model=lambda i, o, s: SquashedNet(mlp(i, o), "sigmoid")),
    faulty(A_MNIST, "a_no_scale", "archlab train --no-scale on 0-255 pixels", ("unscaled_inputs",),
           "H20 Preprocessing/missing normalisation", UNSTABLE, scaling="raw"),
    faulty(A_TAB, "a_tab_huge_targets", "targets 1e4 times their standardised scale, archlab "
           "train --no-scale-targets",
           ("unscaled_targets",), "H20 Preprocessing/missing normalisation (targets)",
           ("loss_not_decreasing", "lr_too_low"), target_scale=1e4),
    faulty(A_TAB, "a_tab_nan_inputs", "three rows of the data file hold a NaN feature",
           ("data_error",), "DD NaN; H20 Training data quality", (), nan_inputs=3),
]

SETUPS: list[Setup] = FAULTS + HEALTHY


def split(names, seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """(development, held-out): the rule that made :data:`HELD_OUT` (see the module docstring)."""
    order = sorted(names)
    random.Random(seed).shuffle(order)
    half = (len(order) + 1) // 2
    return sorted(order[:half]), sorted(order[half:])


# drawn on 2026-12-01 with split() over the 51 faults and 20 healthy set-ups, before tuning
HELD_OUT: frozenset[str] = frozenset({
    "a_sigmoid_end", "a_tab_nan_inputs", "h_a_mnist_mlp", "h_l_digits_cnn_leaky",
    "h_l_digits_loose_clip", "h_l_mnist_mlp", "h_l_mnist_per_feature", "h_l_seq_gru",
    "h_l_syn_tanh", "h_p_seq_conv", "h_p_syn_cosine", "h_p_syn_dropout", "l_adam_lr_0.1",
    "l_bn_batch_2", "l_cnn_linear", "l_frozen_layers", "l_imbalanced", "l_lr_10", "l_lr_1e-7",
    "l_nan_log", "l_negative_bias_relu", "l_not_in_optimizer", "l_raw255_digits",
    "l_seq_shuffled_labels", "l_sorted_labels", "l_tab_huge_targets", "l_tab_lr_collapse",
    "l_tab_sgd_lr_high", "l_zero_init", "p_cnn_bn_batch_2", "p_cnn_linear",
    "p_seq_linear_conv", "p_seq_sorted", "p_sorted_labels", "p_syn_dead_relu",
})


def half(setup: Setup) -> str:
    return "held-out" if setup.name in HELD_OUT else "dev"


def setups(names=None, which: str | None = None) -> list[Setup]:
    """Set-ups by name (all when None), optionally only one half ('dev' or 'held-out')."""
    chosen = list(SETUPS) if names is None else [s for s in SETUPS if s.name in set(names)]
    if which:
        chosen = [s for s in chosen if half(s) == which]
    return chosen
