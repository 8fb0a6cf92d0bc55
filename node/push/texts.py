"""The words of a push notification in each interface language (the interface's own catalogues are node/web/i18n-*.js;
a push is written on the node, so its few texts are here). English is the key; a text missing from a language stays
English."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "es": {
        "{severity} alert: {headline}": "Alerta {severity}: {headline}",
        "Neighbor report: {category}{where}": "Aviso de un vecino: {category}{where}",
        "SOS: {who}": "SOS: {who}",
        "SOS still unanswered: {who}": "SOS aún sin respuesta: {who}",
        "SOS answered ({who})": "SOS atendido ({who})",
        "SOS ended ({who})": "SOS terminado ({who})",
        "SOS resolved ({who})": "SOS resuelto ({who})",
        "SOS cancelled ({who})": "SOS cancelado ({who})",
        "A neighbor asked for help.": "Un vecino pidió ayuda.",
        "By {name}.": "Por {name}.",
        "unit {unit}": "unidad {unit}",
        "a neighbor": "un vecino",
        "Alert": "Alerta",
        "Extreme": "extrema", "Severe": "grave", "Moderate": "moderada", "Minor": "menor", "Unknown": "desconocida",
        "suspicious activity": "actividad sospechosa", "crime": "delito", "safety hazard": "peligro",
        "lost and found": "objetos perdidos", "other": "otro",
    },
    "zh": {
        "{severity} alert: {headline}": "{severity}警报：{headline}",
        "Neighbor report: {category}{where}": "邻居报告：{category}{where}",
        "SOS: {who}": "SOS：{who}",
        "SOS still unanswered: {who}": "SOS 仍无人回应：{who}",
        "SOS answered ({who})": "SOS 已有人回应（{who}）",
        "SOS ended ({who})": "SOS 已结束（{who}）",
        "SOS resolved ({who})": "SOS 已解决（{who}）",
        "SOS cancelled ({who})": "SOS 已取消（{who}）",
        "A neighbor asked for help.": "一位邻居请求帮助。",
        "By {name}.": "由 {name} 处理。",
        "unit {unit}": "{unit} 单元",
        "a neighbor": "一位邻居",
        "Alert": "警报",
        "Extreme": "极端", "Severe": "严重", "Moderate": "中等", "Minor": "轻微", "Unknown": "未知",
        "suspicious activity": "可疑活动", "crime": "犯罪", "safety hazard": "安全隐患",
        "lost and found": "失物招领", "other": "其他",
    },
}


def say(language: str, english: str, **values: str) -> str:
    """`english` in `language` (English when the language or the text has no translation), with its {names}
    filled in; the values themselves are never translated here (they are what residents and agencies wrote)."""
    text = TEXTS.get(language, {}).get(english, english)
    return text.format(**values).strip() if values else text
