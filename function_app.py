"""Composition root: the Functions app and its blueprints, nothing else.

Each blueprint is one serverless pattern; its handlers import their services on first call, so
indexing here stays close to the cost of ``import azure.functions`` (see benchmarks/cold_start.py).
"""

import azure.functions as func

from blueprints import api_docs, events, fulfillment, health, http_api, imports, schedules

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(health.bp)
app.register_functions(http_api.bp)
app.register_functions(api_docs.bp)
app.register_functions(schedules.bp)
app.register_functions(imports.bp)
app.register_functions(events.bp)
app.register_functions(fulfillment.bp)
