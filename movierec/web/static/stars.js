// The logged-in user's predicted stars beside the movies of a page that is everyone's (search
// results), asked for after the page: inside it they cost each user's first search a recommender
// call (movierec.web.movies.search). The server renders the badges; this only puts them in the
// places the page left for them (movierec.web.fragments.stars_later_slot). Without it, or when
// the answer fails, the page is whole, without stars.
(() => {
  "use strict";
  const url = document.currentScript.dataset.starsUrl;
  const slots = document.querySelectorAll("[data-stars-for]");
  if (!url || slots.length === 0) return;
  const ids = Array.from(slots, (slot) => slot.dataset.starsFor);
  fetch(`${url}?movies=${ids.join(",")}`, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  })
    .then((answer) => (answer.ok ? answer.json() : { badges: {} }))
    .then(({ badges }) => {
      for (const slot of slots) {
        const html = badges[slot.dataset.starsFor];
        if (html) slot.outerHTML = html;
      }
    })
    .catch(() => {}); // a logged-out session is sent to the login page: no JSON, no stars
})();
