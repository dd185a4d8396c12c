"""The API's handlers, one module per concern; each is ``async def handler(request, ctx)``."""
