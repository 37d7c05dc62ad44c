"""Request bodies and query strings, validated with pydantic in strict mode
(a JSON string is never silently turned into a number)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal, TypeVar

from flask import request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from .errors import APIError

MAX_ID = 2**31 - 1  # PostgreSQL integer keys


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; reject it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _no_lone_surrogate(value: str) -> str:
    # "\ud800" is valid JSON, but no UTF-8 text can hold half a surrogate pair: PostgreSQL,
    # Redis and Argon2 would fail to encode it (a 500) if it got past here.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must not contain lone surrogates (\\ud800-\\udfff)") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Any text field: storable as UTF-8 in PostgreSQL.
Str = Annotated[str, AfterValidator(_no_nul), AfterValidator(_no_lone_surrogate)]
Text = Annotated[Str, AfterValidator(_not_blank)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _digits_only(model: str, data, names: tuple[str, ...]):
    """Query strings are text: these parameters in plain decimal digits only ("2"; not "+2",
    " 2", "2.0" or "1_0"), or a 422 naming each."""
    errors = [InitErrorDetails(type=PydanticCustomError(
                  "digits", "must be a whole number written with digits"),
                  loc=(name,), input=data[name])
              for name in names
              if isinstance(data, dict) and isinstance(data.get(name), str)
              and not (data[name].isascii() and data[name].isdigit())]
    if errors:
        raise ValidationError.from_exception_data(model, errors)
    return data


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


NewPassword = Annotated[Str, Field(min_length=8, max_length=128)]


class Credentials(Body):
    username: Annotated[str, Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_]+$")]
    password: NewPassword


class RoleChange(Body):
    # Admins are made by operators (SYNSPIRIT_ADMINS, the CLI), never through the API.
    role: Literal["moderator", "user"]


def _future_instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 time, e.g. 2027-01-02T03:04:05+00:00") from None
    if moment.tzinfo is None:
        raise ValueError("must carry a UTC offset (Z or +08:00)")
    if moment <= datetime.now(timezone.utc):
        raise ValueError("must be in the future")
    return moment


class BanRequest(Body):
    reason: Annotated[Text, Field(min_length=1, max_length=500)]
    # Absent or null: for good, until lifted.
    until: Annotated[Str, AfterValidator(_future_instant)] | None = None


class ReportCreate(Body):
    target_type: Literal["post", "article", "post_comment", "article_comment"]
    target_id: Id
    reason: Annotated[Text, Field(min_length=1, max_length=500)]


class ReportResolve(Body):
    action: Literal["remove", "dismiss"]
    # For the log (and the author's notice); a removal without one logs the report's reason.
    reason: Annotated[Text, Field(min_length=1, max_length=500)] | None = None


class LoginBody(Body):
    username: Annotated[Str, Field(min_length=1, max_length=128)]
    password: Annotated[Str, Field(min_length=1, max_length=128)]


class PasswordChange(Body):
    current_password: Annotated[Str, Field(min_length=1, max_length=128)]
    new_password: NewPassword


class ContentCreate(Body):
    title: Annotated[Text, Field(min_length=1, max_length=200)]
    content: Annotated[Text, Field(min_length=1, max_length=20000)]


class ContentUpdate(Body):
    title: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    content: Annotated[Text, Field(min_length=1, max_length=20000)] | None = None


class CommentCreate(Body):
    content: Annotated[Text, Field(min_length=1, max_length=5000)]


class ActionBody(Body):
    action: Literal["like", "collect", "share"]
    target_type: Literal["post", "article", "post_comment", "article_comment"]
    target_id: Id


MAX_OFFSET_ROWS = 1000  # page numbers reach the first 1,000 items of a list; cursors, all


class PageQuery(BaseModel):
    """A list's page: `cursor` (a `next_cursor` as given; content/pages.py checks it) or a
    `page` number among the first MAX_OFFSET_ROWS items, and `per_page`."""
    model_config = ConfigDict(extra="ignore")
    page: Annotated[int, Field(ge=1, le=MAX_OFFSET_ROWS)] = 1
    per_page: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _bounded_offset(self):
        # OFFSET reads every row it skips: bounded, so that no page number costs more than
        # MAX_OFFSET_ROWS rows; deeper pages by cursor, whose cost does not grow.
        errors = []
        if self.page * self.per_page > MAX_OFFSET_ROWS:
            errors.append(InitErrorDetails(type=PydanticCustomError(
                "page_too_deep", "page x per_page must be at most {limit}; page further with "
                "cursor=next_cursor", {"limit": MAX_OFFSET_ROWS}), loc=("page",), input=self.page))
        if self.cursor is not None and self.page != 1:
            errors.append(InitErrorDetails(type=PydanticCustomError(
                "cursor_and_page", "give cursor or page, not both"), loc=("cursor",),
                input=self.cursor))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @model_validator(mode="before")
    @classmethod
    def _digits_only(cls, data):
        return _digits_only(cls.__name__, data, ("page", "per_page"))


class ListQuery(PageQuery):
    sort: Literal["new", "hot"] = "new"


class SearchQuery(PageQuery):
    """GET /api/search: the words `q` (1-200 characters, not blank) among posts or articles
    (`type`), paged as the lists are."""
    q: Annotated[Text, Field(min_length=1, max_length=200)]
    type: Literal["post", "article"] = "post"


class Subscription(Body):
    target_type: Literal["post", "article"]
    target_id: Id


class IdPageQuery(BaseModel):
    """A list paged by id, newest first: the entries older than `before` (an id), `limit` of
    them. Anything else in the query string is a mistake worth telling (422)."""
    model_config = ConfigDict(extra="forbid")
    before: Id | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20

    @model_validator(mode="before")
    @classmethod
    def _digits_only(cls, data):
        return _digits_only(cls.__name__, data, ("before", "limit"))


class NotificationQuery(IdPageQuery):
    """GET /api/notifications: the user's own, by id."""


class ReportQuery(IdPageQuery):
    """GET /api/reports: `status` (open by default), paged by id as notifications are."""
    status: Literal["open", "removed", "dismissed"] = "open"


class LogQuery(IdPageQuery):
    """GET /api/moderation/log: every staff action, by id."""


class NotificationsRead(Body):
    """POST /api/notifications/read: up to (and including) this id, or all when absent."""
    up_to: Id | None = None


M = TypeVar("M", bound=BaseModel)


def _fields(err: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in err.errors():
        name = ".".join(str(p) for p in item["loc"]) or "body"
        out.setdefault(name, item["msg"])
    return out


def parse(model: type[M], data) -> M:
    """Validate data against model; a 422 names each bad field."""
    if not isinstance(data, dict):
        raise APIError(400, "invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise APIError(422, "validation_error", "invalid input", _fields(err)) from None


def json_body(model: type[M]) -> M:
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise APIError(400, "invalid_json", "the body must be valid JSON")
    return parse(model, data)


def query(model: type[M]) -> M:
    return parse(model, request.args.to_dict())
