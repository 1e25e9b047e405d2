// A checkbox inside its <label> (the dashboard's LabelledCheckbox): the text names the box
// for assistive technology, and a click on the text ticks it. `value` and `text` are the
// Python side's parameters.
function render({ model, el }) {
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = model.value;
  const text = document.createElement("span");
  text.textContent = model.text;
  label.style.cssText = "display:inline-flex;align-items:center;gap:6px;cursor:pointer;font-size:var(--font-size)";
  label.append(box, text);
  box.addEventListener("change", () => { model.value = box.checked; });
  model.on("value", () => { box.checked = model.value; });
  model.on("text", () => { text.textContent = model.text; });
  el.append(label);
}

export default { render };
