"use strict";
// Renders the server's OpenAPI document: every operation (parameters, request body, responses) and every
// component schema. DOM is built with createElement and textContent only, never from HTML strings.
// window.docs holds what was rendered, for tests and for the curious.

const docs = { ready: false, error: null, operations: [], schemas: [] };
window.docs = docs;

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const CONSTRAINTS = [
  "format", "contentEncoding", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
  "maxLength", "pattern", "minItems", "maxItems", "default",
];

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function operationAnchor(method, path) {
  return `op-${method}-${path.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "")}`;
}

function schemaAnchor(name) {
  return `schema-${name}`;
}

function refName(ref) {
  return ref.startsWith("#/components/schemas/") ? ref.slice("#/components/schemas/".length) : null;
}

// The one-line description of a schema's type: a link for a $ref, the value of a const, an enum's values.
function typeLabel(schema) {
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return name ? el("a", { class: "ref", href: `#${schemaAnchor(name)}` }, name) : el("code", {}, schema.$ref);
  }
  if ("const" in schema) return el("code", { class: "type" }, JSON.stringify(schema.const));
  if (schema.enum) return el("code", { class: "type" }, schema.enum.map((v) => JSON.stringify(v)).join(" | "));
  if (schema.oneOf) return el("span", { class: "type" }, "one of");
  if (schema.anyOf) return el("span", { class: "type" }, "any of");
  if (schema.allOf) return el("span", { class: "type" }, "all of");
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  return el("span", { class: "type" }, types.length ? types.join(" | ") : "any");
}

function constraintText(schema) {
  return CONSTRAINTS.filter((name) => name in schema)
    .map((name) => `${name}: ${JSON.stringify(schema[name])}`)
    .join(", ");
}

function schemaLine(schema) {
  const constraints = constraintText(schema);
  return el(
    "div",
    { class: "schema-line" },
    typeLabel(schema),
    constraints ? el("span", { class: "constraints" }, constraints) : null,
    schema.description ? el("span", { class: "description" }, schema.description) : null,
  );
}

function propertiesTable(schema) {
  const required = new Set(schema.required || []);
  const rows = Object.entries(schema.properties).map(([name, property]) =>
    el(
      "tr",
      { "data-property": name },
      el("td", { class: "name" }, el("code", {}, name), required.has(name) ? el("span", { class: "required" }, "required") : null),
      el("td", {}, schemaView(property)),
    ),
  );
  return el("table", { class: "properties" }, el("tbody", {}, ...rows));
}

// What a schema holds beyond its line: properties, items, alternatives, map values.
function schemaParts(schema) {
  const parts = [];
  if (schema.properties && Object.keys(schema.properties).length) parts.push(propertiesTable(schema));
  if (schema.items && typeof schema.items === "object") parts.push(el("div", { class: "part" }, el("span", { class: "label" }, "items"), schemaView(schema.items)));
  for (const keyword of ["oneOf", "anyOf", "allOf"]) {
    if (schema[keyword]) parts.push(el("ol", { class: "alternatives" }, ...schema[keyword].map((s) => el("li", {}, schemaView(s)))));
  }
  if (schema.propertyNames) parts.push(el("div", { class: "part" }, el("span", { class: "label" }, "each key"), schemaView(schema.propertyNames)));
  if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
    parts.push(el("div", { class: "part" }, el("span", { class: "label" }, "each value"), schemaView(schema.additionalProperties)));
  }
  return parts;
}

function schemaView(schema) {
  if (schema === true || schema === undefined || (schema && Object.keys(schema).length === 0)) {
    return el("div", { class: "schema" }, el("div", { class: "schema-line" }, el("span", { class: "type" }, "any")));
  }
  return el("div", { class: "schema" }, schemaLine(schema), ...schemaParts(schema));
}

function parametersView(parameters) {
  const rows = parameters.map((parameter) =>
    el(
      "tr",
      { "data-parameter": parameter.name },
      el("td", { class: "name" }, el("code", {}, parameter.name), parameter.required ? el("span", { class: "required" }, "required") : null),
      el("td", {}, parameter.in),
      el("td", {}, schemaView(parameter.schema || {})),
    ),
  );
  return el(
    "div",
    { class: "parameters" },
    el("h4", {}, "Parameters"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "schema"))), el("tbody", {}, ...rows)),
  );
}

function contentView(content) {
  return Object.entries(content || {}).map(([mediaType, media]) =>
    el(
      "div",
      { class: "media", "data-media-type": mediaType },
      el("code", { class: "media-type" }, mediaType),
      schemaView(media.schema),
      media["x-event-schema"] ? el("div", { class: "part" }, el("span", { class: "label" }, "each event"), schemaView(media["x-event-schema"])) : null,
    ),
  );
}

function operationView(method, path, operation) {
  const parameters = operation.parameters || [];
  const body = operation.requestBody;
  const responses = Object.entries(operation.responses || {}).map(([status, response]) =>
    el(
      "div",
      { class: `response status-${status[0]}`, "data-status": status },
      el("h5", {}, el("span", { class: "status" }, status), " ", response.description || ""),
      ...contentView(response.content),
    ),
  );
  return el(
    "section",
    { class: "operation", id: operationAnchor(method, path), "data-method": method, "data-path": path },
    el("h3", {}, el("span", { class: `method method-${method}` }, method.toUpperCase()), " ", el("code", { class: "path" }, path)),
    operation.summary ? el("p", { class: "summary" }, operation.summary) : null,
    operation.description ? el("p", { class: "description" }, operation.description) : null,
    operation.operationId ? el("p", { class: "operation-id" }, "operationId ", el("code", {}, operation.operationId)) : null,
    parameters.length ? parametersView(parameters) : null,
    body ? el("div", { class: "request-body" }, el("h4", {}, body.required ? "Request body (required)" : "Request body"), ...contentView(body.content)) : null,
    el("div", { class: "responses" }, el("h4", {}, "Responses"), ...responses),
  );
}

function render(document_) {
  document.getElementById("title").textContent = `${document_.info.title} API reference`;
  document.title = `${document_.info.title} API reference`;
  document.getElementById("description").textContent = document_.info.description || "";
  document.getElementById("openapi-version").textContent = document_.openapi;

  const operations = document.getElementById("operations");
  const operationIndex = document.getElementById("operation-index");
  for (const [path, item] of Object.entries(document_.paths || {})) {
    for (const method of METHODS.filter((m) => item[m])) {
      const operation = { ...item[method], parameters: [...(item.parameters || []), ...(item[method].parameters || [])] };
      operations.append(operationView(method, path, operation));
      operationIndex.append(
        el("li", { "data-path": path }, el("a", { href: `#${operationAnchor(method, path)}` }, el("span", { class: `method method-${method}` }, method.toUpperCase()), " ", path)),
      );
      docs.operations.push({ method, path });
    }
  }

  const schemas = document.getElementById("schemas");
  const schemaIndex = document.getElementById("schema-index");
  schemas.append(el("h2", {}, "Schemas"));
  for (const [name, schema] of Object.entries((document_.components || {}).schemas || {})) {
    schemas.append(el("section", { class: "component", id: schemaAnchor(name), "data-schema": name }, el("h3", {}, name), schemaView(schema)));
    schemaIndex.append(el("li", {}, el("a", { href: `#${schemaAnchor(name)}` }, name)));
    docs.schemas.push(name);
  }
}

function applyFilter(text) {
  const needle = text.trim().toLowerCase();
  for (const node of document.querySelectorAll("section.operation, #operation-index li")) {
    node.hidden = needle !== "" && !node.dataset.path.toLowerCase().includes(needle);
  }
}

async function main() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`GET /openapi.json answered ${response.status}`);
    render(await response.json());
    status.hidden = true;
  } catch (error) {
    docs.error = String(error);
    status.textContent = `Could not show the document: ${error}`;
    status.classList.add("failed");
  }
  document.getElementById("filter").addEventListener("input", (event) => applyFilter(event.target.value));
  // The anchor in the address bar exists only now.
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  docs.ready = true;
}

main();
