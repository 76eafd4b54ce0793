/* Issue 27: small fixes of the themes' markup, so that the book works for every reader.
   Checked by tests/test_book_browser.py (taps at 390 px, keyboard, axe-core on every page). */
document.addEventListener("DOMContentLoaded", () => {
  /* The header's sidebar and contents buttons. pydata-sphinx-theme 0.17 and sphinx-book-theme
     1.3 bind their click handlers to the FIRST .primary-toggle / .secondary-toggle of the page,
     a hidden button; the buttons a reader sees (and reaches with the Tab key) did nothing. Each
     other button forwards its click to the first one, so the themes' own handlers run: the
     chapter list opens as a dialog on a narrow screen, the sidebar collapses on a wide one. */
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
  nameControls();
});

/* Run again once everything has loaded: the themes' own scripts may still change the header. */
window.addEventListener("load", nameControls);

function nameControls() {
  /* A control's accessible name must contain the text it shows (WCAG 2.5.3): the search
     button says "Search the course..." but was named "Search", a hidden cell's toggle says
     "Show code cell source" but was named "Toggle hidden content". Where a control shows text,
     that text becomes its name. */
  for (const element of document.querySelectorAll("button[aria-label], summary[aria-label]")) {
    const shown = element.innerText.replace(/\s+/g, " ").trim();
    const label = element.getAttribute("aria-label");
    if (shown && !label.toLowerCase().includes(shown.toLowerCase())) {
      element.removeAttribute("aria-label");
    }
  }
  /* The colour-mode button shows icons only: their titles are not its name. Its name becomes
     text in the button that only a screen reader reads, not an aria-label: with an aria-label,
     axe compares it with the button's visible text, which for icon glyphs it judges by drawing
     them, and it failed the button on 4 of 42 pages in one CI run and on none in the runs
     before. A button named by its content has no such comparison to fail. */
  for (const button of document.querySelectorAll(".theme-switch-button")) {
    for (const icon of button.querySelectorAll("i")) {
      icon.removeAttribute("title");
      icon.setAttribute("aria-hidden", "true");
    }
    if (!button.querySelector(".visually-hidden")) {
      const name = document.createElement("span");
      name.className = "visually-hidden";
      name.textContent = button.getAttribute("aria-label") || "Color mode";
      button.append(name);
    }
    button.removeAttribute("aria-label");
  }
  /* The bibliography is a list whose entries were not list items. */
  for (const item of document.querySelectorAll("[role='list'] > :not([role])")) {
    item.setAttribute("role", "listitem");
  }
  for (const item of document.querySelectorAll("[role='list'] > [role='doc-biblioentry']")) {
    item.setAttribute("role", "listitem");
  }
}
