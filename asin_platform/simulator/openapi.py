"""The hand-written OpenAPI 3.1 document of the unified product API (served at ``/openapi.json``).

It mirrors docs/upstream_api.md: every route, its parameters, the success shapes and the error
responses (400 / 401 / 404 / 429 / 5xx) with the quota headers. Objects allow additional properties
because the contract says unknown extra fields may appear and clients must ignore them.
"""

from __future__ import annotations

from typing import Any

_DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_RATE_HEADERS = {
    "X-RateLimit-Limit": {"description": "quota in requests per minute", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {
        "description": "whole requests left in the token bucket now",
        "schema": {"type": "integer", "minimum": 0},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(
    name: str, where: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
    }


_P: dict[str, dict[str, Any]] = {
    "site": _param(
        "site",
        "path",
        {"type": "string", "enum": ["US", "UK", "DE", "FR", "JP", "CA", "IT", "ES", "IN", "MX", "BR"]},
        "marketplace; a site this server does not simulate is a 404",
    ),
    "asin": _param("asin", "path", {"type": "string", "pattern": "^[A-Z0-9]{10}$"}, "the ASIN"),
    "asins": _param(
        "asins",
        "query",
        {"type": "string"},
        "comma-separated ASINs, at most 100 (more is a 400)",
        required=True,
    ),
    "date": _param("date", "query", _DATE, "UTC calendar day", required=True),
    "start": _param("start", "query", _DATE, "first day (inclusive)", required=True),
    "end": _param("end", "query", _DATE, "last day (inclusive); at most 400 days after start", required=True),
    "since": _param("since", "query", _DATE, "first day of reviews (inclusive)", required=True),
    "until": _param("until", "query", _DATE, "last day of reviews (inclusive); defaults to since"),
    "page_size": _param(
        "page_size",
        "query",
        {"type": "integer", "minimum": 1, "maximum": 5000, "default": 1000},
        "rows per page",
    ),
    "page_token": _param("page_token", "query", {"type": "string"}, "opaque token from next_page_token"),
}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _responses(ok: str, not_found: bool) -> dict[str, Any]:
    err = _ref("Error")
    responses: dict[str, Any] = {
        "200": _json(_ref(ok), "success", _RATE_HEADERS),
        "400": _json(
            err, "bad_request: bad date, too many ASINs, bad page token, bad page_size", _RATE_HEADERS
        ),
        "401": _json(err, "unauthorized: missing or unknown bearer token"),
        "429": _json(
            err,
            "rate_limited: the token's bucket is empty",
            {
                **_RATE_HEADERS,
                "Retry-After": {
                    "description": "seconds until a request is allowed again (may be fractional)",
                    "schema": {"type": "string"},
                },
            },
        ),
        "500": _json(err, "internal"),
        "502": _json(err, "bad_gateway"),
        "503": _json(err, "unavailable"),
    }
    responses["404"] = _json(
        err, "not_found: unknown site" + (" or ASIN" if not_found else ""), _RATE_HEADERS
    )
    return responses


def _get(summary: str, params: list[str], ok: str, single: bool, op_id: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": op_id,
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": [_P[p] for p in params],
            "responses": _responses(ok, single),
        }
    }


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": True,
    }


_ASIN_LIST = {"type": "array", "items": {"type": "string"}}

_SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"}})}),
    "Health": _obj(
        {
            "status": {"type": "string", "const": "ok"},
            "time": {"type": "string", "format": "date-time"},
            "version": {"type": "string"},
        }
    ),
    "AsinsPage": _obj(
        {
            "site": {"type": "string"},
            "date": _DATE,
            "total": {"type": "integer", "minimum": 0},
            "asins": _ASIN_LIST,
            "next_page_token": {"type": ["string", "null"]},
        }
    ),
    "Listing": _obj(
        {
            "title_length": {"type": "integer", "minimum": 0},
            "bullet_count": {"type": "integer", "minimum": 0, "maximum": 5},
            "image_count": {"type": "integer", "minimum": 1, "maximum": 9},
            "has_aplus": {"type": "boolean"},
            "attribute_flags": _obj(
                {
                    "video": {"type": "boolean"},
                    "size_chart": {"type": "boolean"},
                    "brand_story": {"type": "boolean"},
                    "prime": {"type": "boolean"},
                }
            ),
        }
    ),
    "Product": _obj(
        {
            "asin": {"type": "string"},
            "site": {"type": "string"},
            "title": {"type": "string"},
            "brand": {"type": "string"},
            "category_id": {"type": "string"},
            "category_path": {"type": "array", "items": {"type": "string"}},
            "subcategory_id": {"type": "string"},
            "listing": _ref("Listing"),
            "listed_since": _DATE,
        }
    ),
    "ProductsBatch": _obj(
        {
            "site": {"type": "string"},
            "date": _DATE,
            "products": {"type": "array", "items": _ref("Product")},
            "not_found": _ASIN_LIST,
        }
    ),
    "Point": _obj(
        {
            "date": _DATE,
            "price": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "description": "null: no offer that day",
            },
            "bsr_root": {"type": ["integer", "null"], "minimum": 1, "description": "null: not ranked"},
            "bsr_sub": {"type": ["integer", "null"], "minimum": 1},
            "rating": {
                "type": ["number", "null"],
                "minimum": 1,
                "maximum": 5,
                "description": "null: no reviews",
            },
            "review_count": {"type": "integer", "minimum": 0},
            "new_offer_count": {"type": "integer", "minimum": 0},
            "buybox_seller": {"type": ["string", "null"]},
        }
    ),
    "Series": _obj(
        {
            "asin": {"type": "string"},
            "site": {"type": "string"},
            "points": {"type": "array", "items": _ref("Point")},
        }
    ),
    "TimeseriesBatch": _obj(
        {
            "site": {"type": "string"},
            "start": _DATE,
            "end": _DATE,
            "items": {"type": "array", "items": _ref("Series")},
            "not_found": _ASIN_LIST,
        }
    ),
    "Review": _obj(
        {
            "review_id": {"type": "string"},
            "asin": {"type": "string"},
            "date": _DATE,
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "verified": {"type": "boolean"},
        }
    ),
    "ReviewsPage": _obj(
        {
            "site": {"type": "string"},
            "since": _DATE,
            "until": _DATE,
            "reviews": {"type": "array", "items": _ref("Review")},
            "next_page_token": {"type": ["string", "null"]},
            "not_found": _ASIN_LIST,
        },
        required=["site", "since", "until", "reviews", "next_page_token"],
    ),
    "Keyword": _obj(
        {
            "keyword": {"type": "string"},
            "search_volume": {"type": "integer", "minimum": 0},
            "rank": {"type": "integer", "minimum": 1, "description": "organic position, 1 = top"},
        }
    ),
    "KeywordItem": _obj(
        {"asin": {"type": "string"}, "keywords": {"type": "array", "items": _ref("Keyword")}}
    ),
    "KeywordsResponse": _obj(
        {
            "site": {"type": "string"},
            "date": _DATE,
            "items": {"type": "array", "items": _ref("KeywordItem")},
            "not_found": _ASIN_LIST,
        }
    ),
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI 3.1 document."""
    site = "/v1/sites/{site}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Unified product API (asin-platform simulator)",
            "version": "1",
            "description": "Daily Amazon ASIN signals. See docs/upstream_api.md. Unknown extra fields may "
            "appear in any object; clients must ignore them.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "paths": {
            "/v1/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness (no auth, no quota)",
                    "security": [],
                    "responses": {"200": _json(_ref("Health"), "ok")},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document (no auth, no quota)",
                    "security": [],
                    "responses": {
                        "200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}
                    },
                }
            },
            f"{site}/asins": _get(
                "Tracked ASIN universe on a day (paginated)",
                ["site", "date", "page_size", "page_token"],
                "AsinsPage",
                False,
                "listAsins",
            ),
            f"{site}/products": _get(
                "Product core, batch (<= 100)",
                ["site", "asins", "date"],
                "ProductsBatch",
                False,
                "getProducts",
            ),
            f"{site}/products/{{asin}}": _get(
                "Product core of one ASIN", ["site", "asin", "date"], "Product", True, "getProduct"
            ),
            f"{site}/timeseries": _get(
                "Daily timeseries, batch (<= 100, <= 400 days)",
                ["site", "asins", "start", "end"],
                "TimeseriesBatch",
                False,
                "getTimeseries",
            ),
            f"{site}/products/{{asin}}/timeseries": _get(
                "Daily timeseries of one ASIN (<= 400 days)",
                ["site", "asin", "start", "end"],
                "Series",
                True,
                "getProductTimeseries",
            ),
            f"{site}/reviews": _get(
                "Reviews written in [since, until], batch (paginated)",
                ["site", "asins", "since", "until", "page_size", "page_token"],
                "ReviewsPage",
                False,
                "getReviews",
            ),
            f"{site}/products/{{asin}}/reviews": _get(
                "Reviews of one ASIN written in [since, until] (paginated)",
                ["site", "asin", "since", "until", "page_size", "page_token"],
                "ReviewsPage",
                True,
                "getProductReviews",
            ),
            f"{site}/keywords": _get(
                "Organic keyword ranks on a day, batch",
                ["site", "asins", "date"],
                "KeywordsResponse",
                False,
                "getKeywords",
            ),
            f"{site}/products/{{asin}}/keywords": _get(
                "Organic keyword ranks of one ASIN on a day",
                ["site", "asin", "date"],
                "KeywordsResponse",
                True,
                "getProductKeywords",
            ),
        },
    }
