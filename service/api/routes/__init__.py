"""One router per concern; :func:`service.app.create_app` includes them."""
