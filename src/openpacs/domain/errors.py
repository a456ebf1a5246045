"""Errors of the archive. Each carries the DIMSE status (PS3.7 Annex C, PS3.4) and the
HTTP status a door answers with, so that every door reports the same failure the same way.
"""

from __future__ import annotations


class OpenPacsError(Exception):
    """Base of every error the archive reports to a peer.

    ``dimse_status`` is the Status (0000,0900) value; ``http_status`` the HTTP code;
    the message is the reason given to the user (Error Comment, HTTP body).
    """

    dimse_status: int = 0xC000
    http_status: int = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidInstance(OpenPacsError):
    """The data set cannot be understood: truncated, undecodable, or missing required UIDs.

    PS3.4 Table B.2-1: Error, Cannot understand (Cxxx).
    """

    dimse_status = 0xC000
    http_status = 400


class SopClassMismatch(OpenPacsError):
    """The data set does not match the request's Affected SOP Class/Instance UID.

    PS3.4 Table B.2-1: Error, Data Set does not match SOP Class (A900).
    """

    dimse_status = 0xA900
    http_status = 409


class InstanceTooLarge(OpenPacsError):
    """The data set is larger or deeper than the configured limits (Refused: Out of Resources)."""

    dimse_status = 0xA700
    http_status = 413


class OutOfResources(OpenPacsError):
    """The archive cannot take the instance now, such as a full disk (PS3.4: Refused, A700)."""

    dimse_status = 0xA700
    http_status = 507


class DuplicateRejected(OpenPacsError):
    """The SOP Instance is already stored and the duplicate policy is 'reject' (PS3.7: 0111)."""

    dimse_status = 0x0111
    http_status = 409


class NotAuthorized(OpenPacsError):
    """The peer may not do this (PS3.7 C.4: Refused, Not Authorized, 0124)."""

    dimse_status = 0x0124
    http_status = 403


class UnknownMoveDestination(OpenPacsError):
    """The C-MOVE destination is not a known node (PS3.4 C.4.2.1.4.1: A801)."""

    dimse_status = 0xA801
    http_status = 404


class InvalidQuery(OpenPacsError):
    """The identifier of a query is not valid for the information model (PS3.4: A900/C000)."""

    dimse_status = 0xA900
    http_status = 400


class NotFound(OpenPacsError):
    """A named resource does not exist."""

    dimse_status = 0xC000
    http_status = 404


class Conflict(OpenPacsError):
    """The request contradicts the current state (an existing name, for instance)."""

    dimse_status = 0xC000
    http_status = 409


class PeerError(OpenPacsError):
    """A remote node could not be reached or refused us; the reason says why in plain words."""

    dimse_status = 0xA801
    http_status = 502


class Unauthenticated(OpenPacsError):
    """No valid credentials were given (HTTP 401)."""

    dimse_status = 0x0124
    http_status = 401


class TooManyAttempts(OpenPacsError):
    """Too many failed logins from one address for one name: wait (HTTP 429)."""

    dimse_status = 0x0124
    http_status = 429


class Unavailable(OpenPacsError):
    """A part of the service is not installed or not running (HTTP 503)."""

    dimse_status = 0xA700
    http_status = 503


class RejectedInstance(OpenPacsError):
    """A SOP Instance the archive rejected (IHE IOCM) is sent again and refused.

    Status 0xA771 (Refused: the instance was rejected), as IOCM archives answer it.
    """

    dimse_status = 0xA771
    http_status = 409


class RequestTooLarge(OpenPacsError):
    """A request body is larger than the configured limit (HTTP 413)."""

    dimse_status = 0xA700
    http_status = 413


class CannotDerive(OpenPacsError):
    """An instance cannot be compressed as a lossy routing rule asks (an unsupported encoding...)."""

    dimse_status = 0xC000
    http_status = 422


class NoPixelData(CannotDerive):
    """Not an image (a report, a presentation state...): nothing to compress, it goes as it is."""


class NormalizedError(OpenPacsError):
    """A refused N-CREATE, N-SET or N-ACTION (PS3.7 C: 0x0106 invalid attribute value, 0x0110
    processing failure, 0x0111 duplicate SOP instance, 0x0112 no such SOP instance, 0x0120
    missing attribute, 0x0121 missing attribute value)."""

    http_status = 409

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.dimse_status = status
