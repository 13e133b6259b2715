/*
 * Node only: the one object every part of the widgets adds its names to (the browser uses
 * window.LLMBookWidgets). require() caches it, so all parts share it.
 */
module.exports = {};
