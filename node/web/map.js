// The map: streets from the map the manager loaded, served by the node (map-streets.js), or, with none loaded, an
// inline SVG drawn from /api/map with no tiles. Either way no request leaves the building's network.
//
// Equirectangular projection with the longitude scaled by cos(latitude) at the middle of the drawing, so that at
// neighborhood scale distances and circles look right. Everything is fitted into the view with a margin, and the
// same facts are listed as text under the map for screen readers and for anyone who prefers words.

import { $, el, getJSON, setStatus, svgEl } from "./common.js";

const KM_PER_DEG_LAT = 111.32;
const WIDTH = 640;
const HEIGHT = 480;
const MARGIN = 40;           // viewBox units kept clear around the shapes (room for labels)
const MIN_SPAN_DEG = 0.02;   // about 2 km: a lone building is not zoomed in to nothing

/** Wire the map section; returns {show(), hide(), stale()} like the timeline. */
export function initMap() {
  const holder = $("map-canvas");
  const list = $("map-list");
  const status = $("map-status");
  let visible = false;
  let dirty = true;
  let streets = null;

  const load = async () => {
    dirty = false;
    setStatus(status, "Loading…");
    try {
      const answer = await getJSON("/api/map");
      if (streets) { streets.remove(); streets = null; }
      const shown = draw(answer, holder, list);
      if (answer.basemap && shown) {
        const { drawStreets } = await import("./map-streets.js");
        streets = await drawStreets(holder, answer, shown);
      }
      setStatus(status, "");
    } catch (error) {
      setStatus(status, `Could not load the map: ${error.message}`, "error");
    }
  };
  return {
    show() { visible = true; if (dirty) load(); else if (streets) streets.invalidateSize(); },
    hide() { visible = false; },
    stale() { dirty = true; if (visible) load(); },
  };
}

const finite = (...values) => values.every((v) => typeof v === "number" && Number.isFinite(v));

function draw(answer, holder, list) {
  const node = answer.node && finite(answer.node.lat, answer.node.lon) ? answer.node : null;
  const peers = (answer.peers || []).filter((p) => finite(p.lat, p.lon));
  const areas = (answer.areas || []).map((area) => ({
    ...area,
    polygons: (area.polygons || []).map((ring) => ring.filter((pt) => finite(pt[0], pt[1]))).filter((r) => r.length > 2),
    circles: (area.circles || []).filter((c) => finite(c.lat, c.lon, c.radius_km)),
  }));

  // Every point the drawing must contain; circles contribute their north/south/east/west extremes.
  const points = [];
  if (node) points.push([node.lat, node.lon]);
  for (const peer of peers) points.push([peer.lat, peer.lon]);
  for (const area of areas) {
    for (const ring of area.polygons) points.push(...ring);
    for (const c of area.circles) {
      const dLat = c.radius_km / KM_PER_DEG_LAT;
      const dLon = dLat / Math.max(Math.cos((c.lat * Math.PI) / 180), 0.01);
      points.push([c.lat - dLat, c.lon - dLon], [c.lat + dLat, c.lon + dLon]);
    }
  }
  const reports = (answer.reports || []).filter((r) => finite(r.lat, r.lon));
  if (points.length === 0 && !answer.basemap) {
    holder.replaceChildren(el("p", { class: "muted" }, "No location is set for this node and there is nothing to draw yet."));
    list.replaceChildren();
    return null;
  }
  list.replaceChildren(...describe(node, peers, areas, reports));
  if (answer.basemap) return { node, peers, areas, reports };  // the street map draws them

  const lats = points.map((p) => p[0]);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((midLat * Math.PI) / 180);
  const xs = points.map((p) => p[1] * k);
  const ys = points.map((p) => -p[0]);
  const spanX = Math.max(Math.max(...xs) - Math.min(...xs), MIN_SPAN_DEG);
  const spanY = Math.max(Math.max(...ys) - Math.min(...ys), MIN_SPAN_DEG);
  const cx = (Math.max(...xs) + Math.min(...xs)) / 2;
  const cy = (Math.max(...ys) + Math.min(...ys)) / 2;
  const scale = Math.min((WIDTH - 2 * MARGIN) / spanX, (HEIGHT - 2 * MARGIN) / spanY); // units per degree of latitude
  const at = (lat, lon) => [WIDTH / 2 + (lon * k - cx) * scale, HEIGHT / 2 + (-lat - cy) * scale];
  const fmt = (n) => n.toFixed(1);

  const svg = svgEl("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "map-svg", role: "img",
    "aria-labelledby": "map-svg-title map-svg-desc", preserveAspectRatio: "xMidYMid meet",
  },
  svgEl("title", { id: "map-svg-title" }, "Map of this node, nearby nodes and alert areas"),
  svgEl("desc", { id: "map-svg-desc" }, "The same information is listed as text below the map."),
  svgEl("rect", { class: "map-bg", x: 0, y: 0, width: WIDTH, height: HEIGHT }));

  for (const area of areas) {
    const sev = String(area.severity || "Unknown").toLowerCase();
    const tip = `${area.title || area.event || "Alert area"} (severity: ${area.severity || "Unknown"})`;
    for (const ring of area.polygons) {
      const d = ring.map(([lat, lon]) => at(lat, lon).map(fmt).join(",")).join(" ");
      svg.append(svgEl("polygon", { class: `map-area sev-${sev}`, points: d }, svgEl("title", {}, tip)));
    }
    for (const c of area.circles) {
      const [x, y] = at(c.lat, c.lon);
      const r = (c.radius_km / KM_PER_DEG_LAT) * scale;
      svg.append(svgEl("circle", { class: `map-area sev-${sev}`, cx: fmt(x), cy: fmt(y), r: fmt(r) },
        svgEl("title", {}, tip)));
    }
  }
  for (const peer of peers) {
    const [x, y] = at(peer.lat, peer.lon);
    svg.append(svgEl("g", { class: "map-peer" },
      svgEl("title", {}, `Nearby node: ${peer.name || peer.key || "unnamed"}`),
      svgEl("circle", { cx: fmt(x), cy: fmt(y), r: 7 }),
      label(x, y, 11, peer.name || "node", "map-label map-label-small")));
  }
  if (node) {
    const [x, y] = at(node.lat, node.lon);
    svg.append(svgEl("g", { class: "map-node" },
      svgEl("title", {}, `This node: ${node.name || ""}`),
      svgEl("rect", { x: fmt(x - 10), y: fmt(y - 10), width: 20, height: 20, transform: `rotate(45 ${fmt(x)} ${fmt(y)})` }),
      label(x, y, 16, node.name || "This node", "map-label")));
  }
  svg.append(scaleBar(scale), northArrow());
  for (const place of reportPlaces(reports)) {
    const [x, y] = at(place.lat, place.lon);
    svg.append(svgEl("g", { class: "map-report" },
      svgEl("title", {}, `${place.reports.length} report${place.reports.length > 1 ? "s" : ""} at ${place.building}`),
      svgEl("circle", { cx: fmt(x + 14), cy: fmt(y - 14), r: 12 }),
      svgEl("text", { x: fmt(x + 14), y: fmt(y - 7), "text-anchor": "middle", class: "map-report-count" },
        String(place.reports.length))));
  }
  holder.replaceChildren(svg);
  return { node, peers, areas, reports };
}

/** Reports grouped by the building they were made at (a report has no position of its own). */
export function reportPlaces(reports) {
  const places = new Map();
  for (const report of reports) {
    const key = `${report.lat},${report.lon}`;
    if (!places.has(key)) places.set(key, { lat: report.lat, lon: report.lon, building: report.building, reports: [] });
    places.get(key).reports.push(report);
  }
  return [...places.values()];
}

/** A marker's label, to its right, or to its left in the right third so that it stays inside the drawing. */
function label(x, y, gap, text, cls) {
  const left = x > (WIDTH * 2) / 3;
  return svgEl("text", { x: (left ? x - gap : x + gap).toFixed(1), y: (y + 7).toFixed(1), class: cls,
    "text-anchor": left ? "end" : "start" }, text);
}

/** A scale bar of a round length (1, 2 or 5 × 10^n km) about a quarter of the width. */
function scaleBar(scale) {
  const kmPerUnit = KM_PER_DEG_LAT / scale;
  const target = (WIDTH / 4) * kmPerUnit;
  const power = 10 ** Math.floor(Math.log10(target));
  const km = [5, 2, 1].map((m) => m * power).find((v) => v <= target) || power;
  const length = km / kmPerUnit;
  const x = 16;
  const y = HEIGHT - 18;
  const label = km >= 1 ? `${+km.toFixed(1)} km` : `${Math.round(km * 1000)} m`;
  return svgEl("g", { class: "map-scale", "aria-hidden": "true" },
    svgEl("path", { d: `M${x} ${y - 6} V${y} H${(x + length).toFixed(1)} V${y - 6}` }),
    svgEl("text", { x, y: y - 10, class: "map-label map-label-small" }, label));
}

// Bottom right, across from the scale bar, where labels (drawn to the right of markers) rarely reach.
function northArrow() {
  const x = WIDTH - 24;
  const y = HEIGHT - 62;
  return svgEl("g", { class: "map-north", "aria-hidden": "true" },
    svgEl("path", { d: `M${x} ${y} l-8 20 h16 z` }),
    svgEl("text", { x, y: y + 44, class: "map-label map-label-small", "text-anchor": "middle" }, "N"));
}

/** The text version: node, peers with distance and direction from the node, alert areas, reports. */
function describe(node, peers, areas, reports) {
  const out = [];
  out.push(el("h3", {}, "This node"),
    el("p", {}, node ? `${node.name || "This node"} (${node.lat.toFixed(3)}, ${node.lon.toFixed(3)})` : "No location set."));
  out.push(el("h3", {}, `Nearby nodes (${peers.length})`));
  out.push(peers.length
    ? el("ul", {}, peers.map((peer) => el("li", {}, peer.name || peer.key || "unnamed",
      node ? ` — about ${distanceKm(node, peer).toFixed(1)} km ${bearing(node, peer)}` : "")))
    : el("p", {}, "None."));
  out.push(el("h3", {}, `Alert areas (${areas.length})`));
  out.push(areas.length
    ? el("ul", {}, areas.map((area) => el("li", {},
      el("strong", {}, area.title || area.event || "Alert"), ` — severity: ${area.severity || "Unknown"}`,
      area.circles.map((c) => `; within ${c.radius_km} km of ${c.lat.toFixed(3)}, ${c.lon.toFixed(3)}`),
      area.polygons.length ? `; ${area.polygons.length} drawn area${area.polygons.length > 1 ? "s" : ""}` : "")))
    : el("p", {}, "None."));
  out.push(el("h3", {}, `Reports in the last week (${reports.length})`));
  out.push(reports.length
    ? el("ul", {}, reports.map((r) => el("li", {}, el("strong", {}, r.category.replace(/-/g, " ")),
      ` at ${r.building}${r.nearby ? " (nearby)" : ""}: ${r.summary}`)))
    : el("p", {}, "None."));
  return out;
}

function distanceKm(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(h)));
}

function bearing(a, b) {
  const dx = (b.lon - a.lon) * Math.cos((a.lat * Math.PI) / 180);
  const dy = b.lat - a.lat;
  if (Math.abs(dx) < 1e-9 && Math.abs(dy) < 1e-9) return "";
  const names = ["north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west"];
  const angle = (Math.atan2(dx, dy) * 180) / Math.PI; // 0 = north, clockwise
  return names[Math.round(((angle + 360) % 360) / 45) % 8];
}
