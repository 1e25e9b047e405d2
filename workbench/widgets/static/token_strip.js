// The token strip as a two-way widget: `html` is a strip (or one page of it) rendered by
// token_strip.py, `selected` the selected position (null for none). One module for both
// hosts: the notebook explorer (anywidget in Jupyter) and the dashboard (Panel's
// JSComponent); `host` adapts their two model APIs.
//
// A click on a token is handled by the strip's own onclick (highlight, info line), which
// emits a `tw-select` event: it is forwarded to `selected`. A `selected` set from the
// other side (a chart click, the position box) is shown by clicking the token the same
// way, so the strip has one selection logic, and that click is not echoed back.
function host(model) {
  if (typeof model.save_changes === "function") {  // anywidget
    return {
      get: (name) => model.get(name),
      set: (name, value) => { model.set(name, value); model.save_changes(); },
      on: (name, callback) => model.on("change:" + name, callback),
    };
  }
  return {  // Panel JSComponent: parameters are properties of the model
    get: (name) => model[name],
    set: (name, value) => { model[name] = value; },
    on: (name, callback) => model.on(name, callback),
  };
}

function render({ model, el }) {
  const m = host(model);
  let echoing = false;

  function strip() {
    return el.querySelector(".tw-strip");
  }

  function show() {
    const s = strip();
    if (!s) return;
    const want = m.get("selected");
    const have = s.dataset.selected === undefined ? null : Number(s.dataset.selected);
    if (want === have) return;
    // Deselect by clicking the selected token; select by clicking the wanted one when it is
    // on this page (another page is drawn first by the Python side, then shown here).
    const wanted = want === null ? null : s.querySelector('.t[data-i="' + want + '"]');
    const target = wanted || s.querySelector(".t.sel");
    if (!target) return;
    echoing = true;
    try {
      target.click();
    } finally {
      echoing = false;
    }
  }

  function draw() {
    el.innerHTML = m.get("html");
    show();
  }

  el.addEventListener("tw-select", (event) => {
    if (echoing) return;
    m.set("selected", event.detail.position);
  });
  m.on("html", draw);
  m.on("selected", show);
  draw();
}

export default { render };
