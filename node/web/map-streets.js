// The street map: Leaflet (shipped with the node, BSD-2-Clause, web/leaflet.LICENSE.txt) drawing the raster tiles of
// the map the manager loaded (`nnode map load`), served by the node itself: no request leaves the building's network.
// Loaded only when a map is loaded, so phones of buildings without one never fetch Leaflet.

import { reportPlaces } from "./map.js";

let leaflet = null;

/** Load Leaflet's script and stylesheet once; resolves to window.L. */
function loadLeaflet() {
  if (!leaflet) {
    leaflet = new Promise((resolve, reject) => {
      const css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = "/static/leaflet.css";
      document.head.append(css);
      const script = document.createElement("script");
      script.src = "/static/leaflet.js";
      script.onload = () => resolve(window.L);
      script.onerror = () => { leaflet = null; reject(new Error("the map library did not load")); };
      document.head.append(script);
    });
  }
  return leaflet;
}

const SEVERITY_COLOURS = { extreme: "#8b0000", severe: "#c0392b", moderate: "#d35400", minor: "#b7950b",
  unknown: "#566573" };

/** Draw node, peers and alert areas on the street map in `holder`; returns the Leaflet map. */
export async function drawStreets(holder, answer, { node, peers, areas, reports }) {
  const L = await loadLeaflet();
  const basemap = answer.basemap;
  const box = document.createElement("div");
  box.className = "map-streets";
  box.setAttribute("role", "region");
  box.setAttribute("aria-label", "Street map of this node, nearby nodes and alert areas; the same is listed below");
  holder.replaceChildren(box);
  const [west, south, east, north] = basemap.bounds;
  const map = L.map(box, { minZoom: basemap.minzoom, maxZoom: Math.min(basemap.maxzoom + 2, 22),
    maxBounds: [[south, west], [north, east]], maxBoundsViscosity: 0.8, attributionControl: true });
  L.tileLayer(basemap.url, { minZoom: basemap.minzoom, maxNativeZoom: basemap.maxzoom,
    maxZoom: Math.min(basemap.maxzoom + 2, 22), bounds: [[south, west], [north, east]],
    attribution: basemap.attribution || "", className: "map-tiles" }).addTo(map);
  // A view first: shapes measure themselves against it (a circle's bounds need the map's projection).
  if (node) map.setView([node.lat, node.lon], Math.max(basemap.minzoom, Math.min(basemap.maxzoom, 16)));
  else map.fitBounds([[south, west], [north, east]]);

  const shapes = [];
  for (const area of areas) {
    const colour = SEVERITY_COLOURS[String(area.severity || "Unknown").toLowerCase()] || SEVERITY_COLOURS.unknown;
    const style = { color: colour, weight: 3, fillOpacity: 0.2, className: "map-area-street" };
    const tip = `${area.title || area.event || "Alert area"} (severity: ${area.severity || "Unknown"})`;
    for (const ring of area.polygons) shapes.push(L.polygon(ring, style).bindTooltip(tip).addTo(map));
    for (const c of area.circles) {
      shapes.push(L.circle([c.lat, c.lon], { ...style, radius: c.radius_km * 1000 }).bindTooltip(tip).addTo(map));
    }
  }
  for (const peer of peers) {
    shapes.push(L.circleMarker([peer.lat, peer.lon], { radius: 8, color: "#1b2631", weight: 3, fillColor: "#fff",
      fillOpacity: 1, className: "map-peer-street" }).bindTooltip(`Nearby node: ${peer.name || "unnamed"}`).addTo(map));
  }
  if (node) {
    shapes.push(L.circleMarker([node.lat, node.lon], { radius: 10, color: "#fff", weight: 3, fillColor: "#1f5fa8",
      fillOpacity: 1, className: "map-node-street" }).bindTooltip(`This node: ${node.name || ""}`).addTo(map));
  }
  for (const place of reportPlaces(reports)) {
    const count = place.reports.length;
    const icon = L.divIcon({ className: "map-report-street", html: "", iconSize: [26, 26], iconAnchor: [-4, 30] });
    const marker = L.marker([place.lat, place.lon], { icon, keyboard: true,
      title: `${count} report${count > 1 ? "s" : ""} at ${place.building}` }).addTo(map);
    marker.getElement().textContent = String(count);
    const list = document.createElement("ul");
    list.className = "map-report-list";
    for (const report of place.reports.slice(0, 10)) {
      const item = document.createElement("li");
      item.textContent = `${report.category.replace(/-/g, " ")}: ${report.summary}`;
      list.append(item);
    }
    marker.bindPopup(list);
  }
  L.control.scale({ imperial: false }).addTo(map);
  // Open on the node and what is around it, within what the map covers.
  if (shapes.length > 1) map.fitBounds(L.featureGroup(shapes).getBounds().pad(0.15), { maxZoom: basemap.maxzoom });
  return map;
}
