// Render the formulas that pymdownx.arithmatex (generic mode) wraps in
// <span class="arithmatex">\( ... \)</span> and <div class="arithmatex">\[ ... \]</div>,
// with the KaTeX copy shipped in docs/assets/katex (no network needed).
function renderFormulas(root) {
  renderMathInElement(root, {
    delimiters: [
      { left: "\\[", right: "\\]", display: true },
      { left: "\\(", right: "\\)", display: false },
    ],
    throwOnError: false,
  });
}
if (typeof document$ !== "undefined") {
  document$.subscribe(({ body }) => renderFormulas(body)); // Material's instant loading
} else {
  document.addEventListener("DOMContentLoaded", () => renderFormulas(document.body));
}
