// Sidebar buttons on phones (pydata-sphinx-theme 0.17 with sphinx-book-theme 1.3).
//
// Both themes render a "primary-toggle" (chapter list) and a "secondary-toggle" (on this page)
// button: pydata-sphinx-theme's in its navbar, which sphinx-book-theme hides, and
// sphinx-book-theme's in the article header, the one a reader sees and taps. Both theme
// scripts attach their click handlers with document.querySelector, i.e. to the first, hidden
// button only, so tapping the visible hamburger did nothing (pydata-sphinx-theme issue #2451).
// Here a click on any later button of the same kind is passed on to the first one, which runs
// the themes' own code: the drawer on narrow screens, collapsing the sidebar on wide ones.
// tests/browser checks at 400 px that tapping the button shows the chapter list.
document.addEventListener("DOMContentLoaded", () => {
  for (const kind of [".primary-toggle", ".secondary-toggle"]) {
    const [bound, ...others] = document.querySelectorAll(kind);
    for (const button of others) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
      });
    }
  }
});
