"""An ASGI middleware that refuses request bodies over a byte limit with a 413 JSON error.

A declared ``Content-Length`` over the limit is refused before a byte is read; a body sent
without one (chunked) is read up to the limit and refused as soon as it passes it. A body
within the limit is handed on to the app unchanged.
"""

from __future__ import annotations

import json


class BodySizeLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await self._refuse(send, 400, "Content-Length must be a whole number")
            if int(declared) > self.max_bytes:
                return await self._too_large(send)
        chunks, size = [], 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client disconnected
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large(send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # afterwards: disconnect notifications, as usual

        return await self.app(scope, replay, send)

    async def _too_large(self, send):
        return await self._refuse(send, 413, f"the request body is larger than the limit of "
                                             f"{self.max_bytes} bytes")

    @staticmethod
    async def _refuse(send, status: int, message: str):
        phrase = "Payload Too Large" if status == 413 else "Bad Request"
        body = json.dumps({"error": phrase, "field": "body", "message": message,
                           "errors": [{"field": "body", "message": message}]}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
