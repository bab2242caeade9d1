import os

from django.core.asgi import get_asgi_application

from config.development import start_embedded_services

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
start_embedded_services()
application = get_asgi_application()
