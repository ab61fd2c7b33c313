// Starts Swagger UI on the API reference page (/api/docs). It is a served file, not an inline
// script, so the page's Content-Security-Policy can allow scripts from the app only. Its
// settings come from data attributes the app writes on the page (shared/api_docs.py).
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  var data = root.dataset;
  var page = window.location.href;

  function words(text) {
    return (text || "").split(" ").filter(Boolean);
  }

  // The served document describes Entra ID in general; "Authorize" offers this deployment's one
  // flow instead: client credentials at the local issuer, or authorization code with PKCE at
  // the Entra ID tenant, with the document's scope names (Entra ID wants them prefixed with the
  // API's application id).
  function withThisDeploymentsSignIn(spec) {
    var name = data.oauthScheme;
    var flow = data.oauthFlow;
    if (!name || !flow) {
      return spec;
    }
    spec.components = spec.components || {};
    var schemes = (spec.components.securitySchemes = spec.components.securitySchemes || {});
    var documented = schemes[name] || {};
    var documentedFlows = documented.flows || {};
    var source = documentedFlows[flow] || {};
    var scopes = {};
    Object.keys(source.scopes || {}).forEach(function (scope) {
      scopes[data.oauthScopePrefix + scope] = source.scopes[scope];
    });
    var flows = {};
    flows[flow] = { tokenUrl: data.oauthTokenUrl, scopes: scopes };
    if (flow === "authorizationCode") {
      flows[flow].authorizationUrl = data.oauthAuthorizationUrl;
    }
    schemes[name] = {
      type: "oauth2",
      description: documented.description || "",
      flows: flows,
    };
    return spec;
  }

  // The local issuer copies app roles into a token only from its `roles` form field: ask for
  // the ticked ones there too (Entra ID grants roles to the client app instead).
  function rolesFromScopes(request) {
    if (data.oauthRolesFromScopes !== "true" || request.url !== data.oauthTokenUrl) {
      return request;
    }
    if (typeof request.body === "string") {
      var form = new URLSearchParams(request.body);
      if (form.get("grant_type") === "client_credentials" && form.has("scope") && !form.has("roles")) {
        form.set("roles", form.get("scope"));
        request.body = form.toString();
      }
    }
    return request;
  }

  function start(spec) {
    var ui = SwaggerUIBundle({
      spec: withThisDeploymentsSignIn(spec),
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
      requestInterceptor: rolesFromScopes,
    });
    if (data.oauthFlow) {
      ui.initOAuth({
        clientId: data.oauthClientId,
        scopes: words(data.oauthScopes).map(function (scope) {
          return data.oauthScopePrefix + scope;
        }),
        usePkceWithAuthorizationCodeGrant: true,
      });
    }
    window.ui = ui;
  }

  fetch(new URL(data.openapiUrl, page).href, { headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("the OpenAPI document answered " + response.status);
      }
      return response.json();
    })
    .then(start)
    .catch(function (error) {
      root.textContent = "The API reference could not load the OpenAPI document: " + error.message;
      console.error(error);
    });
})();
