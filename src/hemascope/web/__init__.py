"""``hemascope serve``: the main job behind a web page and a JSON API, for people who will
never open a terminal (and for other programs). Needs the ``web`` extra (FastAPI, uvicorn).
"""

from hemascope.web.service import RequestError, Service, ServiceLimits, ServiceResult

__all__ = ["RequestError", "Service", "ServiceLimits", "ServiceResult", "create_app"]


def create_app(service: Service):
    """The FastAPI application (see :mod:`hemascope.web.app`)."""
    from hemascope.web.app import create_app as _create

    return _create(service)
