"""The :class:`Emulator`: an in-memory catalogue per region serving the fourteen operations."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from .clock import Clock, _to_datetime, _to_epoch, _to_ms
from .faults import Faults
from .modes import Lifecycle, Modes
from .paging import (
    _DEFAULT_MAX_RESULTS,
    _IMAGE_LISTING,
    _VERSION_LISTING,
    _Listing,
    _ListQuery,
    _Row,
    _TokenCodec,
)
from .shapes import _container_image, _Image, _image_shape, _Version, _version_arn, _version_shape
from .tagging import add_tags, check_tags, delete_tags, list_tags, merge_tags
from .validation import (
    IN_USE,
    INTERNAL_FAILURE,
    LIMIT_EXCEEDED,
    NOT_FOUND,
    SERIALIZATION,
    UNKNOWN_OPERATION,
    VALIDATION,
    ApiError,
    _check_detail_members,
    _check_status,
    _check_string,
    _invalid,
    _json_object,
    _Params,
)

__all__ = ["DEFAULT_ACCOUNT_ID", "DEFAULT_REGION", "Emulator"]

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
_DEFAULT_LIMIT = 1000

_Operation = Callable[["Emulator", str, _Params], dict[str, Any]]


class Emulator:
    """In-memory SageMaker image catalogue, one per region; every method is thread-safe."""

    def __init__(
        self,
        account_id: str = DEFAULT_ACCOUNT_ID,
        clock: Clock | None = None,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.account_id = account_id
        self.clock = clock if clock is not None else Clock()
        self.default_region = region
        self.faults = Faults()
        self.modes = Modes()
        self._lifecycle = Lifecycle()
        self.image_limit = _DEFAULT_LIMIT
        self.version_limit = _DEFAULT_LIMIT
        self._lock = threading.RLock()
        self._regions: dict[str, dict[str, _Image]] = {}
        self._tokens = _TokenCodec()
        self._requests: list[tuple[str, dict[str, Any]]] = []
        # Called with (operation, request members) before each HTTP request is served: lets a
        # test change the catalogue at an exact point of a client's sequence of calls, or
        # refuse that call: an ApiError it raises is the answer.
        self.before_request: Callable[[str, dict[str, Any]], None] | None = None
        # Rewrites a successful response's JSON body before it is sent: lets a test serve
        # malformed or unusual records that the Python API would never create.
        self.rewrite_response: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None

    # Python API ---------------------------------------------------------------------------

    def create_image(
        self,
        name: str,
        *,
        region: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        role_arn: str | None = None,
    ) -> dict[str, Any]:
        """Create an image (with CreateImage's ``Tags`` as key -> value); returns its
        ``Image`` shape with datetimes."""
        with self._lock:
            image = self._add_image(
                self._region(region),
                _check_string("ImageName", name),
                role_arn=_check_string(
                    "RoleArn", role_arn or f"arn:aws:iam::{self.account_id}:role/SageMakerImageRole"
                ),
                display_name=display_name,
                description=description,
                tags=_tag_list(tags or {}),
            )
            return _image_shape(image, _to_datetime)

    def tag_resource(self, arn: str, tags: Mapping[str, str], *, region: str | None = None) -> None:
        """Add or overwrite tags of the image or image version ``arn`` (AddTags)."""
        with self._lock:
            merge_tags(self.resource_tags(arn, region=region), check_tags(_tag_list(tags)))

    def untag_resource(self, arn: str, keys: Iterable[str], *, region: str | None = None) -> None:
        """Remove tags of the image or image version ``arn`` (DeleteTags)."""
        with self._lock:
            tags = self.resource_tags(arn, region=region)
            for key in keys:
                tags.pop(key, None)

    def resource_tags(self, arn: str, *, region: str | None = None) -> dict[str, str]:
        """The tags of the image or image version ``arn`` names, as held (changing them
        changes the resource's); ResourceNotFound when it names neither."""
        with self._lock:
            _check_string("ResourceArn", arn)
            for image in self._catalogue(self._region(region)).values():
                if arn == image.arn:
                    return image.tags
                prefix = _version_arn(image, 0)[:-1]
                number = arn[len(prefix) :]
                if arn.startswith(prefix) and number.isdigit():
                    version = image.versions.get(int(number))
                    if version is not None:
                        return version.tags
            raise ApiError(NOT_FOUND, f"Resource {arn} does not exist.")

    @property
    def tokens(self) -> _TokenCodec:
        """The NextToken codec every listing of this emulator shares."""
        return self._tokens

    def create_image_version(
        self,
        name: str,
        *,
        region: str | None = None,
        status: str | None = None,
        failure_reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        aliases: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Add the next version to image ``name``; returns its ``ImageVersion`` shape.

        Without ``status`` it is created as CreateImageVersion creates it: CREATED, or
        CREATING for a while under the ``creating_s`` mode. ``details`` holds
        CreateImageVersion's optional members by their wire names (``JobType``,
        ``Processor``, ``Horovod``...), ``aliases`` its ``Aliases``.
        """
        if status is not None:
            _check_status(status)
        params = _Params({**(details or {}), "Aliases": list(aliases)})
        _check_detail_members(details or {})
        with self._lock:
            region = self._region(region)
            image = self._image(region, name)
            base_image = (
                f"{self.account_id}.dkr.ecr.{region}.amazonaws.com/{name.lower()}"
                f":v{image.next_version}"
            )
            version = self._add_version(
                image,
                base_image,
                details=params.details(),
                aliases=params.string_list("Aliases"),
                status=status,
                reason=failure_reason,
            )
            return _version_shape(image, version, _to_datetime)

    def update_image_version(
        self,
        name: str,
        version: int,
        *,
        region: str | None = None,
        status: str | None = None,
        failure_reason: str | None = None,
        last_modified_time: datetime | None = None,
        details: Mapping[str, Any] | None = None,
        aliases_to_add: Iterable[str] = (),
        aliases_to_delete: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Change a version's status and/or failure reason and stamp its LastModifiedTime.

        A new ``status`` replaces the failure reason with ``failure_reason`` (clearing it when
        None). ``details`` and the aliases change as UpdateImageVersion's members of the same
        names would. LastModifiedTime becomes ``last_modified_time`` if given, else the clock's
        now.
        """
        if status is not None:
            _check_status(status)
        _check_detail_members(details or {})
        params = _Params(
            {
                **(details or {}),
                "AliasesToAdd": list(aliases_to_add),
                "AliasesToDelete": list(aliases_to_delete),
            }
        )
        with self._lock:
            image = self._image(self._region(region), name)
            record = self._version(image, version)
            self._change_version(image, record, params)
            if status is not None:
                self._lifecycle.cancel(record)
                record.status, record.failure_reason = status, failure_reason
            elif failure_reason is not None:
                record.failure_reason = failure_reason
            record.modified_ms = (
                self._now_ms() if last_modified_time is None else _to_ms(last_modified_time)
            )
            return _version_shape(image, record, _to_datetime)

    def delete_image_version(self, name: str, version: int, *, region: str | None = None) -> None:
        """Delete one version of image ``name`` (after a while, under the ``deleting_s`` mode)."""
        with self._lock:
            image = self._image(self._region(region), name)
            self._remove_version(image, self._version(image, version))

    def delete_image(self, name: str, *, region: str | None = None) -> None:
        """Delete image ``name`` and all its versions."""
        with self._lock:
            region = self._region(region)
            del self._catalogue(region)[self._image(region, name).name]

    def image_names(self, region: str | None = None) -> list[str]:
        """Names of the region's images, sorted."""
        with self._lock:
            return sorted(self._catalogue(self._region(region)))

    def live_versions(self, region: str | None = None) -> list[dict[str, Any]]:
        """Every version in the region as ``ImageVersion`` shape plus ``ImageName``, sorted."""
        with self._lock:
            catalogue = self._catalogue(self._region(region))
            return [
                {"ImageName": image.name, **_version_shape(image, version, _to_datetime)}
                for image in sorted(catalogue.values(), key=lambda image: image.name)
                for version in sorted(image.versions.values(), key=lambda v: v.number)
            ]

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """(operation, request members) of every HTTP request received, in order."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    # wire API ----------------------------------------------------------------------------

    def call(
        self, operation: str, params: Mapping[str, Any], *, region: str | None = None
    ) -> dict[str, Any]:
        """Run one API operation in-process; returns the wire shape or raises :class:`ApiError`."""
        handler = _OPERATIONS.get(operation)
        if handler is None:
            raise ApiError(UNKNOWN_OPERATION, f"Operation {operation} is not supported.")
        with self._lock:
            return handler(self, self._region(region), _Params(params))

    def handle_request(
        self, operation: str, body: bytes, region: str
    ) -> tuple[int, dict[str, Any]]:
        """Serve one HTTP request: log it, inject faults, run it; returns (status, JSON body)."""
        params = _json_object(body)
        with self._lock:
            self._requests.append((operation, params if params is not None else {}))
        if self.before_request is not None:
            try:
                self.before_request(operation, params if params is not None else {})
            except ApiError as refusal:
                return refusal.status, refusal.payload()
        faults = self.faults
        with self._lock:
            delay = faults.delay(operation)
        if delay > 0:
            time.sleep(delay)
        try:
            if params is None:
                raise ApiError(SERIALIZATION, "The request body is not a JSON object.")
            with self._lock:
                fault = faults.draw(
                    operation, time.monotonic(), region=region, has_token="NextToken" in params
                )
            if fault is not None:
                raise fault
            response = self.call(operation, params, region=region)
            if self.rewrite_response is not None:
                response = self.rewrite_response(operation, response)
            return 200, response
        except ApiError as error:
            return error.status, error.payload()
        except Exception as error:  # a bug here must still look like a service failure
            return 500, ApiError(INTERNAL_FAILURE, repr(error), status=500).payload()

    # operations -------------------------------------------------------------------------

    def _list_images(self, region: str, params: _Params) -> dict[str, Any]:
        query = _ListQuery.parse(params, _IMAGE_LISTING)
        contains = params.string("NameContains")
        needle = (contains or "").lower()
        return self._list_page(
            query,
            self._catalogue(region).values(),
            _IMAGE_LISTING,
            {"region": region, "NameContains": contains},
            lambda image: _image_shape(image, _to_epoch),
            None if contains is None else lambda image: needle in image.name.lower(),
        )

    def _list_image_versions(self, region: str, params: _Params) -> dict[str, Any]:
        name = params.required_string("ImageName")
        query = _ListQuery.parse(params, _VERSION_LISTING)
        image = self._image(region, name)
        return self._list_page(
            query,
            [version for version in image.versions.values() if self.modes.listed(version)],
            _VERSION_LISTING,
            {"region": region, "ImageName": name},
            lambda version: _version_shape(image, version, _to_epoch),
        )

    def _list_page(
        self,
        query: _ListQuery,
        rows: Iterable[_Row],
        listing: _Listing[_Row],
        scope: Mapping[str, Any],
        render: Callable[[_Row], dict[str, Any]],
        keep: Callable[[_Row], bool] | None = None,
    ) -> dict[str, Any]:
        """Filter (time bounds, and `keep`), sort and cut one page after the NextToken's
        cursor; the shared List core."""
        query = replace(query, bounds=self.modes.floor_bounds(query.bounds))
        binding = query.binding(listing.operation, scope)
        key = listing.key(query.sort_by)
        cursor = self._tokens.decode(query.next_token, binding) if query.next_token else None

        def after_cursor(row: _Row) -> bool:
            if cursor is None:
                return True
            return key(row) < cursor if query.descending else key(row) > cursor

        matching = sorted(
            (
                row
                for row in query.admitted(rows)
                if after_cursor(row) and (keep is None or keep(row))
            ),
            key=key,
            reverse=query.descending,
        )
        page, last = self.modes.cut_page(
            lambda: sorted(filter(after_cursor, rows), key=key, reverse=query.descending),
            matching,
            query.max_results,
            filtered=bool(query.bounds) or keep is not None,
        )
        response: dict[str, Any] = {listing.result_key: [render(row) for row in page]}
        if last is not None:
            response["NextToken"] = self._tokens.encode(binding, key(last))
        return response

    def _describe_image(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        return {**_image_shape(image, _to_epoch), "RoleArn": image.role_arn}

    def _describe_image_version(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        version = self._addressed_version(image, params)
        if version is None:
            if not image.versions:
                raise ApiError(NOT_FOUND, f"Image {image.arn} has no versions.")
            version = image.versions[max(image.versions)]
        return {
            **_version_shape(image, version, _to_epoch),
            "BaseImage": version.base_image,
            "ContainerImage": _container_image(version.base_image),
            **version.details,
        }

    def _create_image(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._add_image(
            region,
            params.required_string("ImageName"),
            role_arn=params.required_string("RoleArn"),
            display_name=params.string("DisplayName"),
            description=params.string("Description"),
            tags=params.raw("Tags") or [],
        )
        return {"ImageArn": image.arn}

    def _create_image_version(self, region: str, params: _Params) -> dict[str, Any]:
        name = params.required_string("ImageName")
        base_image = params.required_string("BaseImage")
        token = params.required_string("ClientToken")
        details = params.details()
        aliases = params.string_list("Aliases")
        image = self._image(region, name)
        repeated = [v for v in image.versions.values() if v.client_token == token]
        version = (
            repeated[0]
            if repeated
            else self._add_version(image, base_image, token, details, aliases=aliases)
        )
        return {"ImageVersionArn": _version_arn(image, version.number)}

    def _update_image(self, region: str, params: _Params) -> dict[str, Any]:
        """UpdateImage: the role, display name and description (DeleteProperties clears
        either of the last two); stamps the image unless ``updates_stamp`` is off."""
        image = self._image(region, params.required_string("ImageName"))
        cleared = params.string_list("DeleteProperties")
        role, display, description = (
            params.string(member) for member in ("RoleArn", "DisplayName", "Description")
        )
        image.role_arn = role or image.role_arn
        image.display_name = None if "DisplayName" in cleared else display or image.display_name
        image.description = None if "Description" in cleared else description or image.description
        if self.modes.updates_stamp:
            image.modified_ms = self._now_ms()
        return {"ImageArn": image.arn}

    def _update_image_version(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        version = self._addressed_version(image, params)
        if version is None:
            raise _invalid("Version", None, "not be null when no Alias is given")
        self._change_version(image, version, params)
        if self.modes.updates_stamp:
            version.modified_ms = self._now_ms()
        return {"ImageVersionArn": _version_arn(image, version.number)}

    def _list_aliases(self, region: str, params: _Params) -> dict[str, Any]:
        name = params.required_string("ImageName")
        max_results = params.integer("MaxResults", 1, 100) or _DEFAULT_MAX_RESULTS
        token = params.string("NextToken")
        image = self._image(region, name)
        version = self._addressed_version(image, params)
        chosen = image.versions.values() if version is None else [version]
        # One row per alias, in (version, alias) order; the cursor is the last row returned.
        rows = sorted((v.number, alias) for v in chosen for alias in v.aliases)
        scope = {"region": region, "ImageName": name, "Version": params.integer("Version", 0)}
        binding = json.dumps(["ListAliases", scope, params.string("Alias")], sort_keys=True)
        cursor = self._tokens.decode(token, binding) if token else None
        remaining = [row for row in rows if cursor is None or row > cursor]
        page = remaining[:max_results]
        response: dict[str, Any] = {"SageMakerImageVersionAliases": [alias for _, alias in page]}
        if len(remaining) > len(page):
            response["NextToken"] = self._tokens.encode(binding, page[-1])
        return response

    def _delete_image(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        del self._catalogue(region)[image.name]
        return {}

    def _delete_image_version(self, region: str, params: _Params) -> dict[str, Any]:
        image = self._image(region, params.required_string("ImageName"))
        version = self._addressed_version(image, params)
        if version is None:
            raise _invalid("Version", None, "not be null")
        self._remove_version(image, version)
        return {}

    # internals ---------------------------------------------------------------------------

    def _region(self, region: str | None) -> str:
        return region or self.default_region

    def _now_ms(self) -> int:
        return _to_ms(self.clock.now())

    def _catalogue(self, region: str) -> dict[str, _Image]:
        """A region's images, once every create or delete due by now has settled."""
        if self._lifecycle.pending:
            self._lifecycle.settle(self.modes, self._now_ms())
        return self._regions.setdefault(region, {})

    def _image(self, region: str, name: str) -> _Image:
        catalogue = self._catalogue(region)
        image = catalogue.get(_check_string("ImageName", name))
        if image is None and self.modes.case_insensitive_names:
            # Names are unique in any case (`_add_image`): at most one matches.
            matches = [i for key, i in catalogue.items() if key.lower() == name.lower()]
            image = matches[0] if matches else None
        if image is None:
            arn = f"arn:aws:sagemaker:{region}:{self.account_id}:image/{name}"
            raise ApiError(NOT_FOUND, f"Image {arn} does not exist.")
        return image

    @staticmethod
    def _version(image: _Image, number: int) -> _Version:
        version = image.versions.get(number)
        if version is None:
            raise ApiError(
                NOT_FOUND, f"Image version {_version_arn(image, number)} does not exist."
            )
        return version

    @staticmethod
    def _addressed_version(image: _Image, params: _Params) -> _Version | None:
        """The version a request names by ``Version`` or ``Alias``; None when it names none."""
        number = params.integer("Version", 0)
        alias = params.string("Alias")
        if number is not None and alias is not None:
            raise ApiError(VALIDATION, "Specify either Version or Alias, not both.")
        if alias is not None:
            for version in image.versions.values():
                if alias in version.aliases:
                    return version
            raise ApiError(NOT_FOUND, f"Alias {alias} of image {image.arn} does not exist.")
        return None if number is None else Emulator._version(image, number)

    @staticmethod
    def _claim_aliases(image: _Image, number: int, aliases: Iterable[str]) -> None:
        """Refuse aliases that another version of the image holds (an alias names one version)."""
        for alias in aliases:
            for other in image.versions.values():
                if other.number != number and alias in other.aliases:
                    raise ApiError(
                        IN_USE,
                        f"Alias {alias} is in use by version {other.number} of {image.name}.",
                    )

    def _remove_version(self, image: _Image, version: _Version) -> None:
        """Delete a version: at once, or DELETING first under the ``deleting_s`` mode."""
        if not self._lifecycle.delete(self.modes, image, version, self._now_ms()):
            del image.versions[version.number]

    def _change_version(self, image: _Image, version: _Version, params: _Params) -> None:
        """Apply UpdateImageVersion's members (details, AliasesToAdd/-Delete) to a version."""
        details = params.details()
        added = params.string_list("AliasesToAdd")
        deleted = params.string_list("AliasesToDelete")
        if set(added) & set(deleted):
            raise ApiError(VALIDATION, "An alias cannot be both added and deleted.")
        missing = sorted(set(deleted) - version.aliases)
        if missing:
            raise ApiError(
                NOT_FOUND, f"Alias {missing[0]} of version {version.number} does not exist."
            )
        self._claim_aliases(image, version.number, added)
        version.details.update(details)
        version.aliases = (version.aliases - set(deleted)) | set(added)

    def _add_image(
        self,
        region: str,
        name: str,
        *,
        role_arn: str,
        display_name: str | None,
        description: str | None,
        tags: list[Any],
    ) -> _Image:
        checked = check_tags(tags)
        catalogue = self._catalogue(region)
        if any(existing.lower() == name.lower() for existing in catalogue):
            raise ApiError(IN_USE, f"Image {name} already exists.")
        if len(catalogue) >= self.image_limit:
            raise ApiError(
                LIMIT_EXCEEDED, f"The limit of {self.image_limit} images per region is reached."
            )
        now = self._now_ms()
        image = _Image(
            name=name,
            arn=f"arn:aws:sagemaker:{region}:{self.account_id}:image/{name}",
            role_arn=role_arn,
            display_name=None
            if display_name is None
            else _check_string("DisplayName", display_name),
            description=None if description is None else _check_string("Description", description),
            created_ms=now,
            modified_ms=now,
        )
        merge_tags(image.tags, checked)
        catalogue[name] = image
        return image

    def _add_version(
        self,
        image: _Image,
        base_image: str,
        token: str | None = None,
        details: dict[str, Any] | None = None,
        *,
        aliases: Iterable[str] = (),
        status: str | None = None,
        reason: str | None = None,
    ) -> _Version:
        """The image's next version; without ``status``, as CreateImageVersion leaves it
        (CREATED, or CREATING under the ``creating_s`` mode)."""
        if len(image.versions) >= self.version_limit:
            raise ApiError(
                LIMIT_EXCEEDED,
                f"Image {image.name} reached the limit of {self.version_limit} versions.",
            )
        self._claim_aliases(image, image.next_version, aliases)
        now = self._now_ms()
        version = _Version(
            number=image.next_version,
            base_image=base_image,
            status=status or "CREATED",
            failure_reason=reason,
            created_ms=now,
            modified_ms=now,
            client_token=token,
            details=details or {},
            aliases=set(aliases),
        )
        image.versions[version.number] = version
        image.next_version += 1
        if status is None:
            self._lifecycle.create(self.modes, image, version, now)
        return version


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """key -> value as the model's TagList."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


_OPERATIONS: dict[str, _Operation] = {
    "ListImages": Emulator._list_images,
    "ListImageVersions": Emulator._list_image_versions,
    "DescribeImage": Emulator._describe_image,
    "DescribeImageVersion": Emulator._describe_image_version,
    "ListAliases": Emulator._list_aliases,
    "CreateImage": Emulator._create_image,
    "CreateImageVersion": Emulator._create_image_version,
    "UpdateImage": Emulator._update_image,
    "UpdateImageVersion": Emulator._update_image_version,
    "DeleteImage": Emulator._delete_image,
    "DeleteImageVersion": Emulator._delete_image_version,
    "ListTags": list_tags,
    "AddTags": add_tags,
    "DeleteTags": delete_tags,
}
