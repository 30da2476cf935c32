/* The img2gps web page: upload a photo, show the prediction, its error circle, supporting gallery photos and the
 * photo's own EXIF position. Plain JS, no build step; talks to this server's JSON API only. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var M = window.Img2GPSMap, view = null, previewUrl = null;

  function setState(state, text) {
    document.body.setAttribute("data-state", state);
    $("status").textContent = text || "";
  }

  function detail(body, status) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail)) return body.detail.map(function (d) { return d.msg; }).join("; ");
    return "server answered " + status;
  }

  var reloads = 0;

  function modelLine(info) {
    // the server reloads a model another process replaced; when it could not, it says the one serving is stale
    $("model").textContent = info.spec + " · " + info.gallery_size + " gallery photos · " + info.runtime +
      (info.stale ? " · stale: " + info.stale : "");
  }

  function refreshModel() {  // after each answer: the gallery may have been edited (index add/remove) meanwhile
    fetch("model").then(function (r) { return r.json(); }).then(function (info) {
      modelLine(info);
      if (info.reloads === reloads) return null;
      reloads = info.reloads;
      return fetch("gallery").then(function (r) { return r.json(); }).then(function (gallery) {
        view.setGallery(gallery.map(function (g) { return {id: g.id, lat: g.latitude, lon: g.longitude}; }));
      });
    }).catch(function () {});
  }

  function start() {
    fetch("model").then(function (r) { return r.json(); }).then(function (info) {
      modelLine(info);
      reloads = info.reloads || 0;
      view = M.create($("map"), {tilesUrl: info.tiles ? info.tiles.url : null,
        tilesAttribution: info.tiles ? info.tiles.attribution : "", noticeEl: $("notice")});
      return fetch("gallery").then(function (r) { return r.json(); });
    }).then(function (gallery) {
      view.setGallery(gallery.map(function (g) { return {id: g.id, lat: g.latitude, lon: g.longitude}; }));
      view.fitGallery();
      document.body.setAttribute("data-ready", "1");
    }).catch(function (e) { setState("error", "could not load the model info: " + e); });
  }

  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    var img = $("preview-img");
    img.hidden = false;
    img.onerror = function () { img.hidden = true; }; // e.g. HEIC: the browser cannot show it, the server can read it
    img.src = previewUrl;
    $("preview-name").textContent = file.name;
    $("preview").hidden = false;
  }

  function upload(file) {
    if (!file) return;
    showPreview(file);
    $("result").hidden = true;
    setState("busy", "Locating " + file.name + "…");
    var fd = new FormData();
    fd.append("file", file, file.name);
    var k = Math.max(1, Math.min(20, parseInt($("topk").value, 10) || 5));
    fetch("predict?top_k=" + k, {method: "POST", body: fd}).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (body) {
        if (!r.ok) throw new Error(detail(body, r.status));
        return body;
      });
    }).then(function (p) { render(p); refreshModel(); }).catch(function (e) { setState("error", "Error: " + e.message); });
  }

  function render(p) {
    $("r-pos").textContent = p.latitude.toFixed(6) + ", " + p.longitude.toFixed(6);
    $("r-answer").textContent = p.answer + ": " + p.source_note;
    $("r-radius").textContent = M.fmtM(p.radius_m) + " (" + p.radius_note + ")";
    $("r-conf").textContent = p.chance_note || ("confidence " + p.confidence.toFixed(2));
    $("r-method").textContent = p.method + " · " + p.source;
    $("r-heading").textContent = (p.heading_deg === null || p.heading_deg === undefined)
      ? "not determined"
      : Math.round(p.heading_deg) + "\u00b0 from north" +
        (p.heading_radius_deg ? " (\u00b1" + Math.round(p.heading_radius_deg) + "\u00b0)" : "");
    $("r-exif").textContent = p.photo_exif_position
      ? p.photo_exif_position[0].toFixed(6) + ", " + p.photo_exif_position[1].toFixed(6) + " (" +
        M.fmtM(p.exif_distance_m) + " from the prediction)" + (p.exif_note ? ": " + p.exif_note : "")
      : "none in this photo";
    $("r-elsewhere").textContent = p.exif_note ? "Photo from elsewhere: " + p.exif_note : "";
    $("r-elsewhere").hidden = !p.exif_note;
    $("r-time").textContent = Math.round(p.elapsed_ms) + " ms";
    var ol = $("neighbours");
    ol.textContent = "";
    p.neighbours.forEach(function (n, i) {
      var li = document.createElement("li");
      if (n.thumbnail) {
        var img = document.createElement("img");
        img.src = n.thumbnail; img.alt = n.image_id; img.loading = "lazy";
        li.appendChild(img);
      }
      var t = document.createElement("div");
      t.innerHTML = "<b>#" + (i + 1) + "</b> " + M.scoreLabel(n, p.score_kind) + " · " + M.fmtM(n.distance_m) +
        " away<div class='id'>" + M.esc(n.image_id) + "</div>";
      li.appendChild(t);
      li.addEventListener("mouseenter", function () { view.highlight(n.image_id, true); });
      li.addEventListener("mouseleave", function () { view.highlight(n.image_id, false); });
      ol.appendChild(li);
    });
    $("result").hidden = false;
    view.showPredictions([{label: p.photo, prediction: p, truth: null}], true);
    setState("done", "Located " + p.photo + ".");
  }

  var drop = $("drop");
  ["dragenter", "dragover"].forEach(function (ev) {
    drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (ev) {
    drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) { upload(e.dataTransfer.files[0]); });
  drop.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  $("file").addEventListener("change", function (e) { upload(e.target.files[0]); e.target.value = ""; });
  start();
})();
