"""The report's inlined style sheet and script (no framework, no network).

The script: sortable tables (click a header: numbers as numbers, again to reverse), the
architecture diagram's collapsible stages (click a stage's label; the rows below move up and the
edges are re-routed with the same geometry as ``report/diagram.py``), and links between the
diagram, the node table and the review findings (click one, the others light up).
"""

CSS = """
:root{--ink:#212529;--muted:#6c757d;--line:#dee2e6;--soft:#f8f9fa;--accent:#d9480f;--blue:#1c7ed6}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--ink);background:#f4f5f7}
header{background:#1f2933;color:#fff;padding:18px 28px 10px}
header h1{margin:0;font-size:22px;font-weight:650}
header .subtitle{margin:4px 0 8px;color:#cbd2d9}
nav{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px}
nav a{color:#9fd3ff;text-decoration:none}
nav a:hover{text-decoration:underline}
main{max-width:1280px;margin:0 auto;padding:16px 20px 40px}
section.level2{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 18px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.04)}
section.level3{margin:10px 0}
h2{font-size:17px;margin:2px 0 10px}
h3{font-size:15px;margin:8px 0}
h4{font-size:13px;margin:4px 0 6px;color:#343a40}
p.note{color:var(--muted);font-size:12.5px;margin:6px 0}
.table-wrap{overflow:auto;border:1px solid var(--line);border-radius:6px}
.table-wrap:has(table.nodes),.table-wrap:has(table.long){max-height:560px}
table.data{border-collapse:collapse;width:100%;font-size:12.5px}
table.data th{position:sticky;top:0;background:#e9ecef;text-align:left;padding:5px 8px;cursor:pointer;white-space:nowrap;user-select:none}
table.data th.sorted-asc::after{content:" \\25B2";font-size:9px}
table.data th.sorted-desc::after{content:" \\25BC";font-size:9px}
table.data td{padding:4px 8px;border-top:1px solid #f1f3f5;white-space:nowrap}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.data tbody tr:hover{background:#fff9db}
tr.hl,tr.hl:hover{background:#ffe8cc!important}
.better{color:#2b8a3e;font-weight:600}.worse{color:#c92a2a;font-weight:600}
.sev-error{color:#c92a2a;font-weight:700}.sev-warning{color:#e67700;font-weight:700}.sev-info{color:#1c7ed6}
.diagram-wrap{overflow:auto;max-height:78vh;border:1px solid var(--line);border-radius:6px;background:#fff}
.diagram-tools{margin:0 0 6px;display:flex;gap:8px;align-items:center;font-size:12px;color:var(--muted)}
button{font:inherit;font-size:12px;padding:3px 10px;border:1px solid #adb5bd;background:#fff;border-radius:5px;cursor:pointer}
button:hover{background:#f1f3f5}
svg.archlab-diagram .stage-label.toggle{cursor:pointer}
svg.archlab-diagram g.node{cursor:pointer}
svg.archlab-diagram g.node.hl rect{stroke:#d9480f;stroke-width:3}
.legend{display:inline-block;width:90px;height:10px;background:linear-gradient(90deg,#fff4e6,#f76707);border:1px solid #ced4da;vertical-align:middle}
.bars td.bar{width:45%}
.bar-track{background:#f1f3f5;border-radius:3px;height:12px;position:relative}
.bar-fill{background:#f76707;height:12px;border-radius:3px}
.bar-fill.params{background:#1c7ed6}.bar-fill.mem{background:#37b24d}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:14px}
.grid .cell{min-width:0;border:1px solid var(--line);border-radius:8px;padding:8px;background:#fff}
.grid.wide{grid-template-columns:repeat(auto-fit,minmax(460px,1fr))}
figure{margin:6px 0;display:inline-block;vertical-align:top}
figure img{max-width:100%;border:1px solid var(--line);border-radius:4px;background:#fff}
figcaption{font-size:12px;color:var(--muted)}
img{max-width:100%}
.examples figure{width:118px;text-align:center;margin:4px}
.examples img{image-rendering:pixelated;width:96px;height:96px}
.examples .wrong{color:#c92a2a}
ul.findings{padding-left:18px}ul.findings li{margin:4px 0}
.pill{display:inline-block;padding:0 7px;border-radius:9px;background:#e9ecef;font-size:11.5px;margin-right:4px}
.pill.ok{background:#d3f9d8;color:#2b8a3e}.pill.bad{background:#ffe3e3;color:#c92a2a}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:4px 0 8px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:130px;background:var(--soft)}
.card-value{font-size:18px;font-weight:650;font-variant-numeric:tabular-nums}
.card-label{font-size:11.5px;color:var(--muted)}
.design-block .two{display:grid;grid-template-columns:fit-content(62%) minmax(360px,1fr);gap:16px;align-items:start}
.design-block.compact .two{grid-template-columns:1fr}
@media (max-width:900px){.design-block .two{grid-template-columns:1fr}}
footer{text-align:center;color:var(--muted);font-size:12px;padding:0 0 24px}
"""

SCRIPT = r"""
(function(){
"use strict";
// ---- sortable tables ----------------------------------------------------------------------
function sortTable(th){
  var table=th.closest('table'), tbody=table.tBodies[0], col=+th.dataset.col;
  var asc=!th.classList.contains('sorted-asc');
  table.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
  th.classList.add(asc?'sorted-asc':'sorted-desc');
  var rows=Array.prototype.slice.call(tbody.rows);
  rows.sort(function(a,b){
    var x=a.cells[col]?a.cells[col].dataset.sort:'', y=b.cells[col]?b.cells[col].dataset.sort:'';
    var nx=parseFloat(x), ny=parseFloat(y), c;
    if(x===''&&y==='') c=0; else if(x==='') c=1; else if(y==='') c=-1;
    else if(!isNaN(nx)&&!isNaN(ny)&&String(nx)!=='NaN') c=nx-ny; else c=x.localeCompare(y);
    return asc?c:-c;
  });
  rows.forEach(function(r){tbody.appendChild(r);});
}
document.querySelectorAll('table.sortable th').forEach(function(th){
  th.addEventListener('click',function(){sortTable(th);});
});
// ---- diagram: collapsible stages ----------------------------------------------------------
var W=200,H=36,HEADER=18,PAD=12,INSET=14,DROP=6;  // as report/diagram.py
function Diagram(svg){
  var self=this; this.svg=svg;
  this.routeX=+svg.dataset.routeX; this.step=+svg.dataset.laneStep;
  this.h0=+svg.getAttribute('height');
  this.stages={}; this.nodes={};
  svg.querySelectorAll('g.stage').forEach(function(g){
    self.stages[g.dataset.stage]={g:g,x0:+g.dataset.x0,y0:+g.dataset.y0,x1:+g.dataset.x1,y1:+g.dataset.y1,collapsed:false};
    var label=g.querySelector('.stage-label');
    if(label) label.addEventListener('click',function(){self.toggle(g.dataset.stage);});
    var box=g.querySelector('.stage-collapsed');
    if(box) box.addEventListener('click',function(){self.toggle(g.dataset.stage);});
  });
  svg.querySelectorAll('g.node').forEach(function(g){
    self.nodes[g.dataset.id]={g:g,x:+g.dataset.x,y:+g.dataset.y,stage:g.dataset.stage};
  });
  this.edges=Array.prototype.slice.call(svg.querySelectorAll('path.edge'));
}
Diagram.prototype.collapsedHeight=function(){return HEADER+PAD+H;};
Diagram.prototype.shiftAt=function(y){
  var s=0,ch=this.collapsedHeight();
  for(var k in this.stages){var st=this.stages[k]; if(st.collapsed&&y>=st.y1-0.5) s+=(st.y1-st.y0)-ch;}
  return s;
};
Diagram.prototype.rep=function(id){
  var n=this.nodes[id]; var st=n.stage?this.stages[n.stage]:null;
  if(st&&st.collapsed){var dy=this.shiftAt(st.y0); return {key:'s:'+n.stage,x:st.x0+PAD,y:st.y0+HEADER+PAD/2-dy};}
  return {key:id,x:n.x,y:n.y-this.shiftAt(n.y)};
};
Diagram.prototype.layout=function(){
  var self=this, ch=this.collapsedHeight(), total=0;
  for(var k in this.stages){
    var st=this.stages[k], dy=this.shiftAt(st.y0);
    st.g.setAttribute('transform','translate(0,'+(-dy)+')');
    st.g.querySelector('.stage-frame').setAttribute('height',st.collapsed?ch:(st.y1-st.y0));
    st.g.querySelector('.stage-collapsed').style.display=st.collapsed?'':'none';
    var lab=st.g.querySelector('.stage-label');
    if(lab&&lab.firstChild) lab.firstChild.nodeValue=lab.firstChild.nodeValue.replace(/^[\u25B8\u25BE] /,st.collapsed?'\u25B8 ':'\u25BE ');
    st.g.classList.toggle('collapsed',st.collapsed);
    if(st.collapsed) total+=(st.y1-st.y0)-ch;
  }
  for(var id in this.nodes){
    var n=this.nodes[id], s=n.stage?this.stages[n.stage]:null;
    if(s&&s.collapsed){n.g.style.display='none';continue;}
    n.g.style.display='';
    n.g.setAttribute('transform','translate('+n.x+','+(n.y-this.shiftAt(n.y))+')');
  }
  this.edges.forEach(function(e){
    var a=self.rep(e.dataset.from), b=self.rep(e.dataset.to);
    if(a.key===b.key){e.style.display='none';return;}
    e.style.display='';
    var d;
    if(!e.classList.contains('skip')){
      var sx=a.x+W/2, sy=a.y+H, tx=b.x+W/2, ty=b.y, m=(sy+ty)/2;
      d='M'+sx+','+sy+' C'+sx+','+m+' '+tx+','+m+' '+tx+','+ty;
    }else{
      var lx=self.routeX+(+e.dataset.slot)*self.step;
      var sx=a.x+W-INSET, sy=a.y+H, tx=b.x+W-INSET, ty=b.y;
      d='M'+sx+','+sy+' V'+(sy+DROP)+' H'+lx+' V'+(ty-DROP)+' H'+tx+' V'+ty;
    }
    e.setAttribute('d',d);
  });
  var h=this.h0-total;
  this.svg.setAttribute('height',h);
  var vb=this.svg.getAttribute('viewBox').split(' ');
  this.svg.setAttribute('viewBox',vb[0]+' '+vb[1]+' '+vb[2]+' '+h);
};
Diagram.prototype.toggle=function(key){var st=this.stages[key]; st.collapsed=!st.collapsed; this.layout();};
Diagram.prototype.setAll=function(c){for(var k in this.stages) this.stages[k].collapsed=c; this.layout();};
window.archlabDiagrams=[];
document.querySelectorAll('svg.archlab-diagram').forEach(function(svg){
  var d=new Diagram(svg); window.archlabDiagrams.push(d);
  var wrap=svg.closest('.diagram-block');
  if(wrap){
    var c=wrap.querySelector('button.collapse-all'), e=wrap.querySelector('button.expand-all');
    if(c) c.addEventListener('click',function(){d.setAll(true);});
    if(e) e.addEventListener('click',function(){d.setAll(false);});
    if(wrap.dataset.collapsed==='1') d.setAll(true);
  }
});
// ---- links between diagram, node table and findings -----------------------------------------
function highlight(scope,id){
  scope.querySelectorAll('.hl').forEach(function(x){x.classList.remove('hl');});
  var g=scope.querySelector('g.node[data-id="'+id+'"]'); if(g) g.classList.add('hl');
  var row=scope.querySelector('tr[data-node="'+id+'"]'); if(row){row.classList.add('hl');}
  return row;
}
document.querySelectorAll('.design-block').forEach(function(block){
  block.querySelectorAll('g.node').forEach(function(g){
    g.addEventListener('click',function(){var r=highlight(block,g.dataset.id); if(r) r.scrollIntoView({block:'nearest'});});
  });
  block.querySelectorAll('tr[data-node]').forEach(function(tr){
    tr.addEventListener('click',function(){highlight(block,tr.dataset.node);});
  });
  block.querySelectorAll('a[data-node]').forEach(function(a){
    a.addEventListener('click',function(ev){ev.preventDefault();
      var id=a.dataset.node, n=null;
      window.archlabDiagrams.forEach(function(d){ if(block.contains(d.svg)&&d.nodes[id]&&d.nodes[id].stage&&d.stages[d.nodes[id].stage].collapsed){d.toggle(d.nodes[id].stage);} });
      highlight(block,id);
      n=block.querySelector('g.node[data-id="'+id+'"]'); if(n) n.scrollIntoView({block:'center',inline:'nearest'});
    });
  });
});
})();
"""
