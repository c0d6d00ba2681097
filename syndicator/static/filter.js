// Progressive enhancement: the page lists every topic without JavaScript; this only narrows the list.
(function () {
  var box = document.getElementById("filter");
  var list = document.getElementById("topics");
  if (!box || !list) return;
  box.parentElement.hidden = false;
  box.addEventListener("input", function () {
    var q = box.value.trim().toLowerCase();
    list.querySelectorAll("li.topic").forEach(function (li) {
      li.hidden = q !== "" && li.dataset.name.indexOf(q) === -1;
    });
  });
})();
