/* Issue 27: the header's sidebar and contents buttons.
   pydata-sphinx-theme 0.17 and sphinx-book-theme 1.3 bind their click handlers to the FIRST
   .primary-toggle / .secondary-toggle of the page, which is a hidden button; the buttons a reader
   sees (and reaches with the Tab key) did nothing. Each other button forwards its click to the
   first one, so the themes' own handlers run: the chapter list opens as a dialog on a narrow
   screen and the sidebar collapses on a wide one. */
document.addEventListener("DOMContentLoaded", () => {
  for (const selector of [".primary-toggle", ".secondary-toggle"]) {
    const [bound, ...others] = document.querySelectorAll(selector);
    for (const button of others) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
      });
    }
  }
});
