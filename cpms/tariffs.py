"""Tariffs: import, replace, list and retire them.

Tariffs arrive as OCPI 2.2.1 documents. Retiring one takes it off every connector that
lists it (the OCPI advice before a tariff DELETE) and keeps the row, because sessions and
CDRs priced with it still refer to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from cpms.documents import apply_tariff, item_of, tariff_from_ocpi
from cpms.errors import DocumentError, InvalidRequest
from cpms.events import ConnectorChanged, TariffChanged
from cpms.locations import ImportResult
from cpms.model import Connector, Evse, Tariff, utcnow
from cpms.pages import Page, fetch_page
from cpms.unit_of_work import UnitOfWork

__all__ = ["get_tariff", "import_tariffs", "list_tariffs", "replace_tariff", "retire_tariff"]


async def import_tariffs(uow: UnitOfWork, documents: Sequence[Mapping[str, Any]]) -> ImportResult:
    """Create or replace tariffs from OCPI documents, all or none."""
    now = utcnow()
    result = ImportResult()
    async with uow:
        for index, document in enumerate(documents):
            with item_of(index, len(documents)):
                tariff_id = document.get("id")
                existing = (
                    await uow.session.get(Tariff, tariff_id) if isinstance(tariff_id, str) else None
                )
                if existing is None:
                    tariff = tariff_from_ocpi(dict(document), now=now)
                    uow.session.add(tariff)
                    result.created.append(tariff.id)
                else:
                    apply_tariff(existing, dict(document), now=now)
                    existing.retired_at = None
                    result.updated.append(existing.id)
            uow.record(TariffChanged(occurred_at=now, tariff_id=str(document["id"])))
        await uow.commit()
    return result


async def list_tariffs(
    uow: UnitOfWork, *, offset: int = 0, limit: int | None = None, include_retired: bool = False
) -> Page[Tariff]:
    """List tariffs in the order they were created."""
    query = select(Tariff).order_by(Tariff.created_at, Tariff.id)
    if not include_retired:
        query = query.where(Tariff.retired_at.is_(None))
    async with uow:
        return await fetch_page(uow.session, query, offset=offset, limit=limit)


async def get_tariff(uow: UnitOfWork, tariff_id: str) -> Tariff:
    """Return one tariff (retired ones too)."""
    async with uow:
        return await uow.get(Tariff, tariff_id, kind="tariff")


async def replace_tariff(uow: UnitOfWork, tariff_id: str, document: Mapping[str, Any]) -> Tariff:
    """Replace a tariff with a full OCPI document whose id matches."""
    if document.get("id") != tariff_id:
        raise DocumentError("id", f"must be {tariff_id!r}, the tariff in the URL")
    now = utcnow()
    async with uow:
        tariff = await uow.get(Tariff, tariff_id, kind="tariff")
        if tariff.retired_at is not None:
            raise InvalidRequest(f"tariff {tariff_id!r} is retired; import it again to revive it")
        apply_tariff(tariff, dict(document), now=now)
        uow.record(TariffChanged(occurred_at=now, tariff_id=tariff_id))
        await uow.commit()
        return tariff


async def retire_tariff(uow: UnitOfWork, tariff_id: str) -> Tariff:
    """Retire a tariff and take it off every connector that lists it."""
    now = utcnow()
    async with uow:
        tariff = await uow.get(Tariff, tariff_id, kind="tariff")
        if tariff.retired_at is None:
            tariff.retired_at = now
            tariff.last_updated = now
            connectors = await uow.session.scalars(
                select(Connector).options(selectinload(Connector.evse).selectinload(Evse.location))
            )
            for connector in connectors:
                if tariff_id in (connector.tariff_ids or []):
                    connector.tariff_ids = [t for t in connector.tariff_ids or [] if t != tariff_id]
                    connector.touch(now)
                    uow.record(
                        ConnectorChanged(
                            occurred_at=now,
                            location_id=connector.evse.location_id,
                            evse_uid=connector.evse_uid,
                            connector_id=connector.id,
                            fields=("tariff_ids",),
                        )
                    )
            uow.record(TariffChanged(occurred_at=now, tariff_id=tariff_id, retired=True))
        await uow.commit()
        return tariff
