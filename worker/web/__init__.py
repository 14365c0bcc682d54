"""The web console and the HTTP API (``shardsync web``): ``create_app`` builds the ASGI app."""
