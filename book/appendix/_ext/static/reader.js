/* The book on every screen (added by the page_assets extension).
 *
 * 1. Sidebar buttons. pydata-sphinx-theme 0.17 wires its sidebar dialogs to the FIRST
 *    `.primary-toggle` / `.secondary-toggle` of the page (document.querySelector), and
 *    sphinx-book-theme 1.3 wires its desktop "hide the sidebar" to the same button.
 *    Both are the header's copies, which sphinx-book-theme hides; the buttons readers
 *    see (in the article header) get no listener, so on phones and tablets neither the
 *    chapter list nor the page's contents can be opened, and on a desktop the sidebar
 *    cannot be hidden (pydata/pydata-sphinx-theme#2451). Every other toggle button
 *    forwards its click to the wired one, so the themes' own code does what it was
 *    written to do.
 * 2. Figure lightbox. Clicking (tapping) an image of the article opens it in an
 *    overlay at full resolution: scaled up to fill a large screen, at its natural size
 *    (scrollable) on a small one. A click anywhere, the close button or Escape closes
 *    it.
 * 3. Search summaries. Sphinx's search quotes the text around the match from the page's
 *    [role=main], which in this theme also holds the toolbar (".ipynb .pdf Binder ...")
 *    and the print-only "Contents" list, so results read "....pdf Convolution ...
 *    Contents...".
 *    The summary is taken from the page without them.
 */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") {
      fn();
    } else {
      document.addEventListener("DOMContentLoaded", fn);
    }
  }

  // 1 ------------------------------------------------------------------------------
  function forwardSidebarToggles() {
    [".primary-toggle", ".secondary-toggle"].forEach(function (selector) {
      var wired = document.querySelector(selector);
      if (!wired) {
        return;
      }
      document.querySelectorAll(selector).forEach(function (button) {
        if (button === wired) {
          return;
        }
        button.addEventListener("click", function (event) {
          event.preventDefault();
          event.stopPropagation();
          wired.click();
        });
      });
    });
  }

  // 2 ------------------------------------------------------------------------------
  var overlay = null;
  var opener = null;

  function closeLightbox() {
    if (!overlay || overlay.hidden) {
      return;
    }
    overlay.hidden = true;
    overlay.querySelector("img").removeAttribute("src");
    document.body.classList.remove("book-lightbox-open");
    if (opener) {
      opener.focus();
    }
  }

  function buildOverlay() {
    overlay = document.createElement("div");
    overlay.className = "book-lightbox";
    overlay.hidden = true;
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-modal", "true");
    overlay.setAttribute(
      "aria-label", "Enlarged figure (click or press Escape to close)"
    );
    var close = document.createElement("button");
    close.type = "button";
    close.className = "book-lightbox-close";
    close.setAttribute("aria-label", "Close");
    close.textContent = "\u00d7";
    var img = document.createElement("img");
    img.alt = "";
    overlay.appendChild(close);
    overlay.appendChild(img);
    overlay.addEventListener("click", closeLightbox);
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !overlay.hidden) {
        event.preventDefault();
        closeLightbox();
      }
    });
    document.body.appendChild(overlay);
  }

  function openLightbox(source) {
    if (!overlay) {
      buildOverlay();
    }
    opener = source;
    var img = overlay.querySelector("img");
    var w = source.naturalWidth || source.width;
    var h = source.naturalHeight || source.height;
    // Fit the screen when the image is smaller than it (at most 2x, to stay sharp
    // enough); otherwise keep every pixel and let the overlay scroll.
    var fit = Math.min(
      (window.innerWidth - 32) / w, (window.innerHeight - 32) / h
    );
    var scale = Math.max(1, Math.min(fit, 2));
    img.style.width = Math.round(w * scale) + "px";
    img.style.height = Math.round(h * scale) + "px";
    img.alt = source.alt || "";
    img.src = source.currentSrc || source.src;
    overlay.hidden = false;
    overlay.scrollTop = 0;
    overlay.scrollLeft = 0;
    document.body.classList.add("book-lightbox-open");
    overlay.querySelector("button").focus();
  }

  function setUpLightbox() {
    var images = document.querySelectorAll(".bd-article img");
    images.forEach(function (img) {
      if (img.closest("a, button")) {
        return; // a linked image already does something when clicked
      }
      img.classList.add("book-zoomable");
      img.setAttribute("tabindex", "0");
      img.setAttribute("role", "button");
      img.setAttribute("title", "Enlarge");
      img.addEventListener("click", function () {
        openLightbox(img);
      });
      img.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          openLightbox(img);
        }
      });
    });
  }

  // 3 ------------------------------------------------------------------------------
  var NOT_PROSE = [
    ".bd-header-article", ".bd-sidebar-secondary", ".prev-next-area",
    ".bd-footer-article", ".bd-footer-content", ".onlyprint",
  ].join(",");

  function cleanSearchSummaries() {
    // searchtools.js declares `const Search` (a global binding, not a window property).
    if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") {
      return;
    }
    var original = Search.htmlToText;
    Search.htmlToText = function (htmlString, anchor) {
      var doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(NOT_PROSE).forEach(function (e) {
        e.remove();
      });
      return original.call(this, doc.documentElement.outerHTML, anchor);
    };
  }

  ready(function () {
    forwardSidebarToggles();
    setUpLightbox();
    cleanSearchSummaries();
  });
})();
