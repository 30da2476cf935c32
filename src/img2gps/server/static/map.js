/* img2gps map drawing, shared by the web page (server/static/index.html) and the offline HTML maps (maps.py).
 * Needs Leaflet (served from an installed pip package, never a CDN). Tiles are optional decoration: when they
 * cannot load (no network) the points stay on a plain background with a local grid in metres, and we say so. */
(function () {
  "use strict";
  var COLORS = {pred: "#d62728", truth: "#2ca02c", exif: "#9467bd", gallery: "#7f7f7f", neighbour: "#ff7f0e"};
  var R = 6371008.8;

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }

  function distanceM(a, b) { // haversine, metres; a, b = [lat, lon]
    var p1 = a[0] * Math.PI / 180, p2 = b[0] * Math.PI / 180;
    var dp = p2 - p1, dl = wrapDeg(b[1] - a[1]) * Math.PI / 180;
    var h = Math.sin(dp / 2) * Math.sin(dp / 2) + Math.cos(p1) * Math.cos(p2) * Math.sin(dl / 2) * Math.sin(dl / 2);
    return 2 * R * Math.asin(Math.sqrt(Math.min(1, Math.max(0, h))));
  }

  /* The wedge the camera saw: apex at the camera, centred on its compass heading (0 = north, clockwise),
     half-width the calibrated heading error (20 deg drawn when unknown), lengthM metres long. */
  function viewCone(at, headingDeg, halfDeg, lengthM) {
    var pts = [at], half = Math.max(3, Math.min(90, halfDeg || 20)), mLat = Math.PI / 180 * R;
    var mLon = mLat * Math.max(0.01, Math.cos(at[0] * Math.PI / 180));
    for (var a = headingDeg - half; a <= headingDeg + half + 1e-9; a += half / 6) {
      var r = a * Math.PI / 180;
      pts.push([at[0] + lengthM * Math.cos(r) / mLat, at[1] + lengthM * Math.sin(r) / mLon]);
    }
    pts.push(at);
    return pts;
  }

  function wrapDeg(d) { return ((d + 180) % 360 + 360) % 360 - 180; } // degrees into [-180, 180)

  function circularMeanLon(lons) {
    var s = 0, c = 0;
    lons.forEach(function (l) { s += Math.sin(l * Math.PI / 180); c += Math.cos(l * Math.PI / 180); });
    return (s === 0 && c === 0) ? (lons[0] || 0) : Math.atan2(s, c) * 180 / Math.PI;
  }

  /* The one distance rule (geo.format_distance in Python): metres below 1 km, km above. */
  function fmtM(m) {
    return m < 1000 ? Math.round(m) + " m" : m < 100000 ? (m / 1000).toFixed(2) + " km"
      : Math.round(m / 1000).toLocaleString("en-US") + " km";
  }

  /* What a neighbour's score is, from the Prediction's score_kind: the inlier count of a verified match
     (consensus, pose and scene answers), else the cosine similarity of the global embeddings (as the CLI). */
  function scoreLabel(n, kind) {
    return kind === "inliers" ? "inliers " + Math.round(n.score) : "cosine similarity " + n.score.toFixed(3);
  }

  function bearingDeg(a, b) { // initial compass bearing from a to b, degrees clockwise from north
    var p1 = a[0] * Math.PI / 180, p2 = b[0] * Math.PI / 180, dl = wrapDeg(b[1] - a[1]) * Math.PI / 180;
    var y = Math.sin(dl) * Math.cos(p2), x = Math.cos(p1) * Math.sin(p2) - Math.sin(p1) * Math.cos(p2) * Math.cos(dl);
    return (Math.atan2(y, x) * 180 / Math.PI + 360) % 360;
  }

  function compass(deg) { return ["N", "NE", "E", "SE", "S", "SW", "W", "NW"][Math.round(deg / 45) % 8]; }

  /* Is `pt` so far from the area the core points span that zooming out to it would hide them (a photo whose own
     EXIF position is on another continent)? Far: more than max(5 x the area's radius, 2 km) from its centre. */
  function isFar(core, pt) {
    if (!core.length) return false;
    var c = [core.reduce(function (s, q) { return s + q[0]; }, 0) / core.length,
             circularMeanLon(core.map(function (q) { return q[1]; }))];
    var r = Math.max.apply(null, core.map(function (q) { return distanceM(c, q); }).concat([100]));
    return distanceM(c, pt) > Math.max(5 * r, 2000);
  }

  /* A point `m` metres from `a` along compass bearing `deg` (small distances: local flat approximation). */
  function towards(a, deg, m) {
    var mLat = Math.PI / 180 * R, mLon = mLat * Math.max(0.01, Math.cos(a[0] * Math.PI / 180)), r = deg * Math.PI / 180;
    return [a[0] + m * Math.cos(r) / mLat, a[1] + m * Math.sin(r) / mLon];
  }

  /* A small round marker with a number in it (answers and truths on a map of many photos): readable without
     hovering, drawn above the circles. kind: "prediction" | "truth" | "exif" (class img2gps-num-KIND). */
  function numbered(at, n, kind, colour) {
    return L.marker(at, {keyboard: false, riseOnHover: true, icon: L.divIcon({
      className: "img2gps-num img2gps-num-" + kind, iconSize: [18, 18], iconAnchor: [9, 9],
      html: "<div style='width:18px;height:18px;border-radius:50%;background:" + colour + ";color:#fff;" +
            "border:1.5px solid #fff;box-sizing:border-box;font:bold 10px/15px sans-serif;text-align:center;" +
            "box-shadow:0 0 2px rgba(0,0,0,.6)'>" + n + "</div>"})});
  }

  function niceStep(extent) { // grid spacing giving roughly 4-10 lines across the area
    var steps = [5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000];
    for (var i = 0; i < steps.length; i++) if (extent / steps[i] <= 8) return steps[i];
    return steps[steps.length - 1];
  }

  function create(el, opts) {
    opts = opts || {};
    var map = L.map(el, {zoomControl: true, attributionControl: true, zoomSnap: 0.25, maxZoom: 21});
    L.control.scale({metric: true, imperial: false}).addTo(map);
    map.setView([0, 0], 2);
    var view = {
      map: map, notice: opts.noticeEl || null, gallery: L.layerGroup().addTo(map),
      results: L.layerGroup().addTo(map), grid: L.layerGroup(), galleryMarkers: {}, plain: false, tiles: null,
      points: [], galleryPoints: [], neighbourMarkers: {}, refLon: null
    };
    /* Leaflet draws longitudes as given, so a gallery across +-180 would be split across the map. Every point is
     * placed at the copy of its longitude nearest the gallery's circular-mean longitude (refLon). */
    function ll(lat, lon) {
      if (view.refLon === null) view.refLon = lon;
      return [lat, view.refLon + wrapDeg(lon - view.refLon)];
    }
    view.ll = ll;
    if (view.notice) view.notice.hidden = false;

    function say(text, state) {
      if (!view.notice) return;
      view.notice.textContent = text;
      view.notice.setAttribute("data-tiles", state);
    }

    function goPlain(why) {
      if (view.plain) return;
      view.plain = true;
      if (view.tiles) { map.removeLayer(view.tiles); view.tiles = null; }
      el.classList.add("img2gps-plain");
      view.grid.addTo(map);
      drawGrid();
      say(why + " Points are drawn on a plain background; grid lines every " + fmtM(view.gridStep || 0) +
          " (local metres).", "unavailable");
    }
    view.goPlain = goPlain;

    if (opts.tilesUrl) {
      var loaded = false;
      view.tiles = L.tileLayer(opts.tilesUrl, {maxZoom: 21, maxNativeZoom: 19,
        attribution: opts.tilesAttribution || ""});
      view.tiles.on("tileload", function () {
        if (!loaded) { loaded = true; say("Map tiles: " + (opts.tilesAttribution || "loaded"), "loaded"); }
      });
      view.tiles.on("tileerror", function () { if (!loaded) goPlain("Map tiles unavailable (no network?)."); });
      view.tiles.addTo(map);
      say("Loading map tiles...", "loading");
      setTimeout(function () { if (!loaded) goPlain("Map tiles unavailable (none loaded within 5 s)."); }, 5000);
    } else {
      goPlain("Map tiles are off.");
    }

    function drawGrid() {
      view.grid.clearLayers();
      var pts = view.points.length ? view.points : [[0, 0]];
      var b = L.latLngBounds(pts);
      var c = b.getCenter();
      var mLat = Math.PI / 180 * R, mLon = mLat * Math.cos(c.lat * Math.PI / 180);
      var ext = Math.max(distanceM([b.getSouth(), c.lng], [b.getNorth(), c.lng]),
                         distanceM([c.lat, b.getWest()], [c.lat, b.getEast()]), 50);
      var step = niceStep(ext);
      view.gridStep = step;
      var half = Math.ceil(ext * 1.5 / step) * step;
      var style = {color: "#b9b9b0", weight: 1, interactive: false};
      for (var d = -half; d <= half + 1e-9; d += step) {
        var s = (Math.abs(d) < 1e-9) ? {color: "#8f8f86", weight: 1.5, interactive: false} : style;
        view.grid.addLayer(L.polyline([[c.lat + d / mLat, c.lng - half / mLon], [c.lat + d / mLat, c.lng + half / mLon]], s));
        view.grid.addLayer(L.polyline([[c.lat - half / mLat, c.lng + d / mLon], [c.lat + half / mLat, c.lng + d / mLon]], s));
      }
      if (view.notice && view.plain) {
        view.notice.textContent = view.notice.textContent.replace(/every [^(]* \(/, "every " + fmtM(step) + " (");
      }
    }

    view.setGallery = function (items) {
      view.gallery.clearLayers();
      view.galleryMarkers = {};
      view.galleryPoints = [];
      if ((items || []).length) view.refLon = circularMeanLon(items.map(function (g) { return g.lon; }));
      (items || []).forEach(function (g) {
        var m = L.circleMarker(ll(g.lat, g.lon), {radius: 3, color: COLORS.gallery, weight: 1, fillOpacity: 0.6,
          className: "img2gps-gallery"});
        m.bindTooltip(esc(g.id));
        view.gallery.addLayer(m);
        view.galleryMarkers[g.id] = m;
        view.galleryPoints.push(ll(g.lat, g.lon));
      });
      view.points = view.galleryPoints.slice();
      if (view.plain) drawGrid();
    };

    /* items: [{label, prediction (Prediction JSON), truth: [lat, lon] | null}] */
    view.showPredictions = function (items, showNeighbours) {
      view.results.clearLayers();
      view.neighbourMarkers = {};
      view.items = [];
      var bounds = [], many = items.length > 1;
      var core = view.galleryPoints.slice(); // the area to keep in view: gallery, answers, truths
      items.forEach(function (it) {
        core.push(ll(it.prediction.latitude, it.prediction.longitude));
        if (it.truth) core.push(ll(it.truth[0], it.truth[1]));
      });
      items.forEach(function (it, i) {
        var layers = [];
        var p = it.prediction, at = ll(p.latitude, p.longitude);
        var label = it.label ? esc(it.label) + "<br>" : "";
        var info = label + "prediction " + p.latitude.toFixed(6) + ", " + p.longitude.toFixed(6) +
          "<br>" + esc(p.answer || "") + "<br>radius " + fmtM(p.radius_m) +
          (p.radius_note ? " (" + esc(p.radius_note) + ")" : "") + ", " + (p.chance_note || "confidence " + p.confidence.toFixed(2)) +
          (p.exif_note ? "<br>" + esc(p.exif_note) : "") +
          "<br>" + esc(p.method);
        // many circles on one map stay faint, so the numbered markers read through them
        var cs = many ? {weight: 1, opacity: 0.35, fillOpacity: 0.03} : {weight: 1.5, opacity: 1, fillOpacity: 0.12};
        var circle = L.circle(at, {radius: p.radius_m, color: COLORS.pred, weight: cs.weight, opacity: cs.opacity,
          fillOpacity: cs.fillOpacity, className: "img2gps-radius"});
        view.results.addLayer(circle);
        layers.push([circle, cs]);
        if (p.heading_deg !== null && p.heading_deg !== undefined) {
          var len = Math.max(25, Math.min(80, p.radius_m));
          view.results.addLayer(L.polygon(viewCone(at, p.heading_deg, p.heading_radius_deg, len), {
            color: COLORS.pred, weight: 1, fillOpacity: 0.25, className: "img2gps-view-cone"
          }).bindTooltip("camera faced " + Math.round(p.heading_deg) + "\u00b0 from north" +
            (p.heading_radius_deg ? " (\u00b1" + Math.round(p.heading_radius_deg) + "\u00b0)" : "")));
          info += "<br>heading " + Math.round(p.heading_deg) + "\u00b0";
        }
        var mk = many ? numbered(at, i + 1, "prediction", COLORS.pred)
          : L.circleMarker(at, {radius: 9, color: "#fff", weight: 2, fillColor: COLORS.pred, fillOpacity: 1,
                                className: "img2gps-prediction"});
        mk.bindPopup(info);
        if (it.label) mk.bindTooltip(esc(it.label));
        var others = [["truth", it.truth, COLORS.truth, "true position"],
                      ["exif", p.photo_exif_position, COLORS.exif, "photo's own EXIF position"]];
        others.forEach(function (o) {
          if (!o[1]) return;
          o[1] = ll(o[1][0], o[1][1]);
          var d = distanceM(at, o[1]);
          var line = L.polyline([at, o[1]], {color: o[2], weight: 2, dashArray: o[0] === "exif" ? "6 4" : null,
            className: "img2gps-" + o[0] + "-line"}).bindTooltip(fmtM(d));
          view.results.addLayer(line);
          layers.push([line, {weight: 2, opacity: 1}]);
          if (o[0] === "exif" && isFar(core, o[1])) {
            /* Far away (another city or continent): keep the gallery in view; the dashed line leaves the map
               toward it, and an arrow at the area's edge says how far and which way. */
            var deg = bearingDeg(at, o[1]), ext = Math.max(60, Math.min(400, p.radius_m * 1.2));
            var arrow = L.marker(towards(at, deg, ext), {interactive: true, keyboard: false, icon: L.divIcon({
              className: "img2gps-exif-far", iconSize: [18, 18], iconAnchor: [9, 9],
              html: "<div style='transform: rotate(" + (deg - 90).toFixed(0) + "deg); color:" + o[2] +
                    "; font: bold 16px sans-serif; line-height: 18px; text-align: center'>&#10148;</div>"})});
            // the label wraps and opens toward the map's centre ("auto"), and the arrow is kept in view, so
            // neither is cut at the map's edge
            arrow.bindTooltip("<div style='white-space:normal;width:max-content;max-width:170px'>" + label + o[3] +
              ": " + fmtM(d) + " " + compass(deg) + " of the prediction, off this map</div>",
              {permanent: true, direction: "auto", className: "img2gps-exif-far-label"});
            view.results.addLayer(arrow);
            bounds.push(towards(at, deg, ext));
            return;
          }
          // on a map of many photos, numbered like its answer, so that the pair reads without hovering
          var om = many ? numbered(o[1], i + 1, o[0], o[2])
            : L.circleMarker(o[1], {radius: 6, color: "#fff", weight: 2, fillColor: o[2], fillOpacity: 1,
                                    className: "img2gps-" + o[0]});
          om.bindTooltip(label + o[3] + ": " + fmtM(d) + " from the prediction");
          view.results.addLayer(om);
          layers.push([om, many ? {opacity: 1} : {opacity: 1, fillOpacity: 1}]);
          bounds.push(o[1]);
        });
        view.results.addLayer(mk);
        layers.push([mk, many ? {opacity: 1} : {opacity: 1, fillOpacity: 1}]);
        // supporting photos go above the answer's marker: one 0 m from the answer shows inside its red ring
        if (showNeighbours) {
          (p.neighbours || []).forEach(function (n, k) {
            var np = ll(n.latitude, n.longitude);
            view.results.addLayer(L.polyline([at, np], {color: COLORS.neighbour, weight: 1, opacity: 0.7,
              dashArray: "3 4", interactive: false}));
            var nm = L.circleMarker(np, {radius: 6, color: "#fff", weight: 1.5, fillColor: COLORS.neighbour,
              fillOpacity: 0.95, className: "img2gps-neighbour"});
            nm.bindTooltip("#" + (k + 1) + " " + esc(n.image_id) + " (" + scoreLabel(n, p.score_kind) + ")");
            view.results.addLayer(nm);
            view.neighbourMarkers[n.image_id] = nm;
            bounds.push(np);
          });
        }
        mk.on("mouseover", function () { view.focus(i); });
        mk.on("mouseout", function () { view.focus(null); });
        view.items.push(layers);
        bounds.push(at);
      });
      view.points = view.galleryPoints.concat(bounds);
      if (view.plain) drawGrid();
      var b = L.latLngBounds(bounds.length ? bounds : view.points);
      items.forEach(function (it) { // make every error circle fit
        var p = it.prediction, dLat = p.radius_m / (Math.PI / 180 * R), at = ll(p.latitude, p.longitude);
        var dLon = dLat / Math.max(0.01, Math.cos(p.latitude * Math.PI / 180));
        b.extend([at[0] - dLat, at[1] - dLon]);
        b.extend([at[0] + dLat, at[1] + dLon]);
      });
      if (b.isValid()) map.fitBounds(b.pad(0.1));
    };

    /* With many answers on one map: item i drawn in full, every other one faded (null: all in full). */
    view.focus = function (i) {
      (view.items || []).forEach(function (layers, j) {
        layers.forEach(function (l) {
          var st = {}, dim = i !== null && i !== undefined && j !== i;
          Object.keys(l[1]).forEach(function (k) { st[k] = dim ? l[1][k] * 0.15 : l[1][k]; });
          if (!dim && i !== null && i !== undefined && "weight" in l[1]) st.weight = l[1].weight * 2;
          if (l[0].setStyle) l[0].setStyle(st);
          else if (l[0].setOpacity) l[0].setOpacity(st.opacity);
          if (!dim && i !== null && i !== undefined && l[0].bringToFront) l[0].bringToFront();
        });
      });
    };

    view.highlight = function (id, on) {
      var m = view.neighbourMarkers[id];
      if (m) { m.setStyle({radius: on ? 10 : 6}); if (on) m.openTooltip(); else m.closeTooltip(); }
    };

    /* label check (img2gps data check): items [{image, verdict, reason, score, Latitude, Longitude,
       proposed_lat, proposed_lon, proposed_sigma_m, thumb}]: the label, an arrow to the proposed position */
    view.showLabelChecks = function (items) {
      view.results.clearLayers();
      var bounds = [], colour = {wrong: "#d62728", doubtful: "#ff7f0e"};
      items.forEach(function (it) {
        var at = ll(it.Latitude, it.Longitude), c = colour[it.verdict] || COLORS.pred;
        var info = "<b>" + esc(it.image) + "</b><br>" + esc(it.verdict) +
          (it.score === null || it.score === undefined ? "" : " (score " + it.score.toFixed(2) + ")") +
          "<br>" + esc(it.reason) + (it.thumb ? "<br><img src='" + it.thumb + "' style='max-width:160px'>" : "");
        if (it.proposed_lat !== null && it.proposed_lat !== undefined) {
          var to = ll(it.proposed_lat, it.proposed_lon);
          view.results.addLayer(L.circle(to, {radius: it.proposed_sigma_m || 1, color: c, weight: 1,
            fillOpacity: 0.08, className: "img2gps-proposed-radius"}));
          view.results.addLayer(L.polyline([at, to], {color: c, weight: 2, className: "img2gps-label-arrow"})
            .bindTooltip(fmtM(distanceM(at, to)) + " to the proposed position"));
          // arrow head: a small triangle at the proposed end, pointing along the line
          var mLat = Math.PI / 180 * R, mLon = mLat * Math.cos(to[0] * Math.PI / 180);
          var dx = (to[1] - at[1]) * mLon, dy = (to[0] - at[0]) * mLat, d = Math.max(Math.hypot(dx, dy), 1e-6);
          var ux = dx / d, uy = dy / d, h = Math.min(6, d / 2);
          var tip = function (a, b) { return [to[0] + b / mLat, to[1] + a / mLon]; };
          view.results.addLayer(L.polygon([tip(0, 0), tip(-h * ux - 0.5 * h * uy, -h * uy + 0.5 * h * ux),
            tip(-h * ux + 0.5 * h * uy, -h * uy - 0.5 * h * ux)], {color: c, weight: 1, fillOpacity: 1,
            interactive: false}));
          bounds.push(to);
        }
        view.results.addLayer(L.circleMarker(at, {radius: 7, color: "#fff", weight: 2, fillColor: c, fillOpacity: 1,
          className: "img2gps-label-" + it.verdict}).bindPopup(info).bindTooltip(esc(it.image)));
        bounds.push(at);
      });
      view.points = view.galleryPoints.concat(bounds);
      if (view.plain) drawGrid();
      var b = L.latLngBounds(bounds.length ? bounds : view.points);
      if (b.isValid()) map.fitBounds(b.pad(0.1));
    };

    view.fitGallery = function () {
      if (view.points.length) map.fitBounds(L.latLngBounds(view.points).pad(0.1));
    };
    return view;
  }

  window.Img2GPSMap = {create: create, distanceM: distanceM, fmtM: fmtM, esc: esc, COLORS: COLORS, viewCone: viewCone,
                       scoreLabel: scoreLabel, isFar: isFar, bearingDeg: bearingDeg, compass: compass};
})();
