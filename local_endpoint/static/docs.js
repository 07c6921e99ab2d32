// Swagger UI on /openapi.yaml, whose server is this endpoint: "Try it out" calls it.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.yaml",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null, // the default sends the document to an online validator
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
