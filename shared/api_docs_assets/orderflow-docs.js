// Starts Swagger UI on the API reference page (/api/docs). It is a served file, not an inline
// script, so the page's Content-Security-Policy can allow scripts from the app only. Its
// settings come from data attributes the app writes on the page (shared/api_docs.py).
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  var data = root.dataset;
  var page = window.location.href;
  var ui = SwaggerUIBundle({
    url: new URL(data.openapiUrl, page).href,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // No badge from the public validator service: the page talks to the app and its issuer only.
    validatorUrl: null,
    // Swagger UI would guess /api/oauth2-redirect.html; the redirect page is one of our assets.
    oauth2RedirectUrl: new URL(data.oauth2RedirectUrl, page).href,
    // Tokens stay in memory: closing the tab forgets them.
    persistAuthorization: false,
    displayRequestDuration: true,
  });
  if (data.oauthClientId) {
    ui.initOAuth({
      clientId: data.oauthClientId,
      scopes: data.oauthScopes ? data.oauthScopes.split(" ") : [],
      usePkceWithAuthorizationCodeGrant: true,
    });
  }
  window.ui = ui;
})();
