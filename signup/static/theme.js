// Applies the saved or preferred theme before the page paints (mailcow's key: mailcow_theme).
(function () {
  var t = null;
  try { t = localStorage.getItem("mailcow_theme"); } catch (e) {}
  if (t !== "dark" && t !== "light") {
    t = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  document.documentElement.setAttribute("data-bs-theme", t);
})();
