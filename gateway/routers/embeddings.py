"""``POST /v1/embeddings``.

    curl -H "Authorization: Bearer $KEY" localhost:8080/v1/embeddings \
         -d '{"model": "genaiops-embed", "input": ["hello"]}'
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.calls import Call, resolve_alias
from gateway.deps import GW, ApiKey
from gateway.errors import APIError, ClientDisconnected, InvalidRequest
from gateway.schemas import EmbeddingsRequest, require_valid_text
from genaiops.tokens import count_tokens

__all__ = ["router"]

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings", response_model=None)
async def embeddings(body: EmbeddingsRequest, request: Request, gw: GW, key: ApiKey) -> Response:
    alias = resolve_alias(gw, body.model, "embeddings")
    require_valid_text(body)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or any(not t for t in texts):
        raise InvalidRequest("input must be a non-empty string or list of them", param="input")
    call = Call(gw, request, key, alias.name, stream=False)
    tokens = sum(count_tokens(t) for t in texts)
    call.prompt_estimate = tokens
    await call.admit(tokens)
    payload = body.model_dump(exclude_none=True, exclude={"encoding_format"})
    payload["model"] = alias.name
    order, skipped = await gw.router.plan(alias, sticky=body.user or key.id)
    if skipped:
        await call.circuit_skipped(skipped)
    try:
        dep, resp = await call.until_disconnect(
            call.dispatch(order, lambda b: b.embeddings(payload))
        )
    except ClientDisconnected:
        await call.finish(None, 0, 0, status=499, outcome="disconnected")
        return Response(status_code=499)
    except APIError as e:
        await call.finish(None, 0, 0, status=e.status, outcome="error", error=e)
        raise
    pt = int((resp.get("usage") or {}).get("prompt_tokens") or tokens)
    resp["model"] = alias.name
    if body.encoding_format == "base64":  # the openai SDK asks for base64 by default
        for item in resp.get("data") or []:
            vec = np.asarray(item["embedding"], dtype="<f4")
            item["embedding"] = base64.b64encode(vec.tobytes()).decode("ascii")
    resp["usage"] = {"prompt_tokens": pt, "total_tokens": pt}
    await call.finish(dep, pt, 0)
    return JSONResponse(resp, headers=call.headers())
