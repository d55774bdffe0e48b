"""The datalink service's DaCHS side: a DatalinkCore that links Rucio replicas.

``inputs/rucio/dlcore.py`` hands :class:`RucioDatalinkCore` to DaCHS as a
custom core of the service ``rucio/rucio#dl`` (``/rucio/rucio/dl/dlmeta``).
The decisions are made by :func:`rucio_rd.datalink.answer`; this module only:

- reads the request (its arguments, MAXREC, the client's address) and makes
  that one call with the process's shared resolver,
- turns the rows into DaCHS link definitions, fault rows and *external* SODA
  service descriptors (DaCHS's own core only describes services of its own
  server), and
- renders the DataLink VOTable with the UCDs of DataLink 1.1 and the DataLink
  media type whatever Accept says (DaCHS's stock answers fail datalinklint on
  both).

``/rucio/rucio/dl/dlget`` takes the same parameters and one ID, and answers
with a redirect (303) to the replica the links document would put first, or a
DALI error document (:class:`HttpAnswer`, which DaCHS's ``dlget`` renderer
hands the request to).

DaCHS does not pass the HTTP request to cores, so :func:`install_client_hook`
records the peer address and forwarding headers in the query metadata of
DaCHS's ``dlmeta`` and ``dlget`` renderers; that is the one place this module
reaches into DaCHS internals, and it only adds a key.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import psycopg2
from gavo import base, rsc, rscdef, svcs, utils
from gavo.base import meta
from gavo.formats import votablewrite
from gavo.protocols import datalink
from gavo.votable import V

from rucio_rd import config, dali, datalink_page, links
from rucio_rd import datalink as decisions
from rucio_rd.availability import MISCONFIGURED, Availability
from rucio_rd.dachs_config import load_dachs_settings
from rucio_rd.dachs_server import install_server_fixes
from rucio_rd.ranking import sort_parameter_description
from rucio_rd.soda import EXTENT_COLUMNS

__all__ = ["DachsLogHandler", "RucioDatalinkCore", "install_availability",
           "install_client_hook", "install_dachs_logging"]

log = logging.getLogger("rucio_rd.datalink")

CLIENT_KEY = "rucio_rd.client"
DATALINK_TYPE = "application/x-votable+xml;content=datalink"
#: What the results RESOURCE of a DataLink 1.1 answer names in its standardID INFO.
DATALINK_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.1"

# RESPONSEFORMATs answered (with the same VOTable), by their normalised spelling.
_VOTABLE_FORMATS = {
    "": DATALINK_TYPE,
    "votable": DATALINK_TYPE,
    DATALINK_TYPE: DATALINK_TYPE,
    "application/x-votable+xml": "application/x-votable+xml",
    "text/xml": "text/xml",
}


def response_media_type(responseformat: str | None) -> str:
    """The media type to answer with; other RESPONSEFORMATs are a usage error.

    Without RESPONSEFORMAT it is always the DataLink type: DaCHS's stock core
    sends text/xml when Accept mentions text/html, as Java's default Accept
    (TOPCAT, STILTS) does.  (Browsers, known by their User-Agent, get HTML
    from DaCHS's renderer.)
    """
    key = "".join(str(responseformat or "").split()).lower()
    if key not in _VOTABLE_FORMATS:
        raise base.ValidationError(
            f"RESPONSEFORMAT={links.printable(str(responseformat))[:80]!r} is not supported;"
            f" use {DATALINK_TYPE} (the default) or application/x-votable+xml",
            "RESPONSEFORMAT")
    return _VOTABLE_FORMATS[key]


def _accept_votable_responseformats(service: Any) -> None:
    """Let the service's RESPONSEFORMAT take the DataLink media type.

    DaCHS's DALI key only lists its table formats (not the DataLink type, and
    not with a parameter), so it refuses the one format DataLink defines.  This
    service gets a copy of the key without that list; :func:`response_media_type`
    checks the value instead.  DaCHS's shared key is not touched.
    """
    keys = getattr(service, "serviceKeys", None) or []
    for index, key in enumerate(keys):
        if key.name == "responseformat" and key.values is not None and key.values.options:
            keys[index] = key.change(values=None)


class ExternalSodaDescriptor:
    """A SODA service at a replica's site, written as a DataLink service descriptor:
    its ID parameter preset to the ID that service takes for the file, and VALUES
    on the parameters the file's extent bounds."""

    rendName = None  # not one of this server's renderers

    def __init__(self, link: decisions.SodaLink, inputs: Sequence[Any]) -> None:
        self.inputs = inputs  # input keys made from the RD's soda_inputs params
        self.pubDID = link.did
        self.soda_id = link.soda_id
        self.values = link.values
        self.service = link.service
        self.kind = link.kind
        self.description = link.description
        self.site_name = link.site_name
        # The RESOURCE's ID: an XML name from the site's (ctx makes it unique).
        site = "".join(char if char.isascii() and char.isalnum() else "_"
                       for char in link.site_name)
        self.id_suggestion = f"soda_{self.kind}_{site}"

    def asVOT(self, ctx: Any, accessURL: str | None = None, linkIdTo: str | None = None) -> Any:
        # The ID is unique in the document; so must the name be (datalinklint).
        identifier = ctx.getOrMakeIdFor(self, suggestion=self.id_suggestion)
        resource = V.RESOURCE(
            ID=identifier, name=identifier, type="meta", utype="adhoc:service",
        )[
            V.DESCRIPTION[self.description],
            V.PARAM(name="accessURL", datatype="char", arraysize="*", ucd="meta.ref.url",
                    value=self.service.access_url),
            V.PARAM(name="standardID", datatype="char", arraysize="*",
                    value=self.service.standard_id),
        ]
        if self.service.resource_identifier:
            resource[V.PARAM(name="resourceIdentifier", datatype="char", arraysize="*",
                             value=self.service.resource_identifier)]
        inputs = V.GROUP(name="inputParams")
        for key in self.inputs:
            if key.name == "ID":
                key = key.copy(None)
                key.set(self.soda_id)
            elif key.name in self.values:
                low, high = self.values[key.name]
                key = key.change(values=base.makeStruct(rscdef.Values, min=low, max=high))
            inputs[votablewrite.makeFieldFromColumn(ctx, V.PARAM, key)]
        return resource[inputs]


def install_client_hook() -> None:
    """Make DaCHS's dlmeta and dlget renderers note the peer address and forwarding
    headers, and dlmeta's page for browsers say what was chosen and why."""
    from gavo.web import vodal

    for renderer in (vodal.DatalinkGetMetaRenderer, vodal.DatalinkGetDataRenderer):
        _hook_client(renderer)
    _hook_page(vodal.DatalinkGetMetaRenderer)


def _hook_page(renderer: type) -> None:
    """Browsers get DaCHS's HTML of this service's answers with the summary of
    :mod:`rucio_rd.datalink_page` above it (other services' pages are untouched)."""
    if vars(renderer).get("_rucio_rd_page", False):
        return
    from gavo.web import vodal

    original = renderer._formatData

    def _formatData(self: Any, svcResult: Any, request: Any) -> Any:  # noqa: N802 - DaCHS's
        is_browser = "Mozilla" in (request.getHeader("user-agent") or "")
        if not (is_browser and isinstance(getattr(self.service, "core", None),
                                           RucioDatalinkCore)):
            return original(self, svcResult, request)
        _, data = svcResult
        try:
            page = datalink_page.augment_page(vodal._doDatalinkXSLT(data), data)
        except Exception:  # noqa: BLE001 - the plain page rather than none
            log.exception("the DataLink page could not be summarised")
            return original(self, svcResult, request)
        request.setHeader("content-type", "text/html;charset=utf-8")
        request.write(page)
        request.finish()
        return None

    renderer._formatData = _formatData
    renderer._rucio_rd_page = True


def _hook_client(renderer: type) -> None:
    if vars(renderer).get("_rucio_rd_hooked", False):
        return
    original_init = renderer.__init__

    def __init__(self: Any, request: Any, service: Any) -> None:
        original_init(self, request, service)
        try:
            peer = request.getClientAddress().host
        except AttributeError:
            peer = None
        self.queryMeta[CLIENT_KEY] = {
            "peer": peer,
            "x_forwarded_for": request.getHeader("x-forwarded-for"),
            "x_real_ip": request.getHeader("x-real-ip"),
        }

    renderer.__init__ = __init__
    renderer._rucio_rd_hooked = True


class DachsLogHandler(logging.Handler):
    """Sends the package's log records to DaCHS's logs (``dcInfos``, ``dcErrors``),
    which carry timestamps; otherwise they would end in the server's stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = f"{record.name}: {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                base.ui.notifyError(message)
            elif record.levelno >= logging.WARNING:
                base.ui.notifyWarning(message)
            else:
                base.ui.notifyInfo(message)
        except Exception:  # noqa: BLE001 - logging must never break a request
            self.handleError(record)


def install_dachs_logging() -> None:
    """Route the ``rucio_rd`` loggers to DaCHS's logs (once per process)."""
    logger = logging.getLogger("rucio_rd")
    if not any(isinstance(handler, DachsLogHandler) for handler in logger.handlers):
        logger.addHandler(DachsLogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


# The service's long-lived objects, built from the configuration on first use.
# The dict is registered with DaCHS's caches, so "dachs serve reload" (SIGHUP)
# empties it and the next request reads the configuration again.
_shared_lock = threading.Lock()
_shared: dict[str, Any] = {}


def _shared_resolver(
    table_name: Callable[[], str],
) -> tuple[links.ReplicaResolver, config.Settings]:
    """The process-wide resolver and settings, built from the configuration on first use.

    ``table_name`` names the published table; it is asked only when building.
    """
    with _shared_lock:
        if "resolver" not in _shared:
            table = table_name()
            from rucio_rd import dependencies

            settings = with_dachs_authority(load_dachs_settings())
            resolver = dependencies.make_resolver(
                settings, metadata_lookup=lambda dids: _table_metadata(table, dids)
            )
            _shared.update(settings=settings, resolver=resolver)
            base.ui.notifyInfo("rucio_rd: DataLink service configured"
                               f" (Rucio {settings.rucio.url}, sites from {settings.sites.source})")
        return _shared["resolver"], _shared["settings"]


base.caches.registerCache("getRucioRdShared", _shared, _shared_resolver)


def with_dachs_authority(settings: config.Settings) -> config.Settings:
    """The settings with DaCHS's ``[ivoa] authority`` as the SODA IDs' authority,
    unless ``[sites] soda_id_authority`` names one."""
    if settings.sites.soda_id_authority:
        return settings
    sites = dataclasses.replace(settings.sites,
                                soda_id_authority=base.getConfig("ivoa", "authority"))
    return dataclasses.replace(settings, sites=sites)


def _probe_rucio(table_name: Callable[[], str]) -> tuple[str, str]:
    """The availability probe: the configuration, then Rucio with the service's credentials."""
    from rucio_rd import checks

    try:
        resolver, settings = _shared_resolver(table_name)
    except (config.ConfigError, ValueError) as exc:
        return MISCONFIGURED, str(exc)
    if resolver.breaker.is_open:  # known to be down: do not wait on it again
        return checks.RUCIO_UNREACHABLE, f"circuit open: {resolver.breaker.last_failure}"
    return checks.rucio_state(settings, resolver.rucio)


def install_availability(service: Any, table_name: Callable[[], str]) -> None:
    """Make the service's VOSI availability ask Rucio (DaCHS's default says "true").

    DaCHS takes ``available`` and ``availability_note`` from the service's
    metadata, computing missing items with ``_meta_<key>`` methods; these are
    set on this service only.
    """
    availability = Availability(lambda: _probe_rucio(table_name))
    service._meta_available = lambda: "true" if availability.current()[0] else "false"
    service._meta_availability_note = lambda: availability.current()[1]


def install_data_updated(services: Sequence[Any]) -> None:
    """Make the services' "Data updated" (DaCHS's ``_dataUpdated`` meta: the service
    pages' sidebar, the registry record) the end of the last ``rucio-rd sync``.

    Read from ``rucio.sync_runs`` at most every 5 s; before the first sync,
    DaCHS's own value (the last ``dachs imp``) stands.
    """
    cached: list[Any] = [0.0, None]

    def last_sync() -> Any:
        if time.monotonic() - cached[0] > 5:
            cached[0] = time.monotonic()
            try:
                with base.getTableConn() as connection:
                    if list(connection.query("SELECT to_regclass('rucio.sync_runs')"))[0][0]:
                        cached[1] = list(connection.query(
                            "SELECT max(finished) AT TIME ZONE 'UTC' FROM rucio.sync_runs"))[0][0]
            except psycopg2.Error as exc:
                log.warning("the last sync's time cannot be read: %s",
                            " ".join(str(exc).split()))
        if cached[1] is None:
            return None
        # A typed value, as DaCHS's own (the registry record formats it).
        return meta.META_CLASSES_FOR_KEYS["_dataUpdated"](cached[1])

    for service in services:
        service._meta__dataUpdated = last_sync
        # DaCHS keeps a service's pages without parameters (its info page, an
        # empty form) and each meta item it rendered until the RD is reloaded:
        # they would show the sync that ran before the first visit for ever.
        service._rucio_rd_uncached = True
        service._metaRenderCache = _RenderCacheWithout("_dataUpdated")
    _uncache_marked_services()


class _RenderCacheWithout(dict):
    """DaCHS's cache of a carrier's rendered meta items (``grend``), keyed by
    ``(key, plain)``, that never holds ``key``."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def __contains__(self, item: object) -> bool:
        return not (isinstance(item, tuple) and item[:1] == (self.key,)) and \
            super().__contains__(item)


def _uncache_marked_services() -> None:
    """DaCHS's page cache passes over services marked ``_rucio_rd_uncached``."""
    from gavo.web import caching

    if getattr(caching.getFromServiceCache, "_rucio_rd", False):
        return
    original = caching.getFromServiceCache

    def getFromServiceCache(request: Any, service: Any, *args: Any) -> Any:  # noqa: N802
        if getattr(service, "_rucio_rd_uncached", False):
            return None
        return original(request, service, *args)

    getFromServiceCache._rucio_rd = True
    caching.getFromServiceCache = getFromServiceCache


def _table_metadata(table_name: str, dids: Sequence[str]) -> dict[str, links.FileMetadata]:
    """What the published table knows of the DIDs: obs_id, content type, length,
    product type, extra links and extent.

    A connection the database dropped (a restart, a failover,
    ``pg_terminate_backend``) fails its first query; DaCHS then discards its
    pools, so the lookup is made once more on a fresh connection.
    """
    query = (f"SELECT did, obs_id, content_type, content_length, dataproduct_type, datalinks,"
             f" {', '.join(EXTENT_COLUMNS)} FROM {table_name} WHERE did = ANY(%(dids)s)")
    for attempt in (1, 2):
        try:
            with base.getTableConn() as connection:
                return {
                    did: links.FileMetadata(
                        obs_id, content_type, content_length, product_type,
                        extent=dict(zip(EXTENT_COLUMNS, extent, strict=True)), datalinks=datalinks)
                    for did, obs_id, content_type, content_length, product_type, datalinks,
                    *extent in connection.query(query, {"dids": list(dids)})}
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if attempt == 2:
                raise
            log.warning(
                "metadata lookup lost its database connection (%s); retrying once on a"
                " fresh one", " ".join(str(exc).split()))
    raise AssertionError("unreachable")  # pragma: no cover


#: The columns of the RD's ``links`` table (the DataLink response).
LINK_COLUMNS = ("ID", "access_url", "service_def", "error_message", "description",
                "semantics", "content_type", "content_length", "content_qualifier",
                "local_semantics", "link_auth", "adler32", "site")


def _link_row(**values: Any) -> dict[str, Any]:
    """A row of the RD's ``links`` table: the values given, every other column null."""
    unknown = set(values) - set(LINK_COLUMNS)
    if unknown:
        raise ValueError(f"the links table has no column(s) {sorted(unknown)}")
    return {name: values.get(name) for name in LINK_COLUMNS}


def _this_row(row: decisions.ReplicaLink | decisions.AuxiliaryLink | links.LinkFault
              ) -> dict[str, Any]:
    """The links-table row of a ``#this`` row, an extra link or a fault row."""
    if isinstance(row, decisions.AuxiliaryLink):
        link = row.link
        return _link_row(ID=row.did, access_url=link.access_url, semantics=link.semantics,
                         description=link.description, content_type=link.content_type,
                         content_length=link.content_length)
    if isinstance(row, links.LinkFault):
        did, message = decisions.error_message(row)
        return _link_row(ID=did, error_message=message, semantics="#this")
    return _link_row(ID=row.did, access_url=row.access_url, semantics="#this",
                     description=row.description, content_type=row.content_type,
                     content_length=row.content_length,
                     content_qualifier=row.content_qualifier, link_auth=row.link_auth,
                     adler32=row.adler32, site=row.site)


def _client_facts(queryMeta: Any) -> decisions.ClientFacts:  # noqa: N803 - DaCHS's name
    """What the renderer saw of the client (:func:`install_client_hook`)."""
    return decisions.ClientFacts(**(queryMeta.get(CLIENT_KEY) or {}))


def _request_args() -> dict[str, Any]:
    """The request's arguments, from DaCHS's renderer up the stack; {} for the
    metadata pages (capabilities, info), which ask without a request."""
    try:
        args = utils.stealVar("args")
    except ValueError:
        return {}
    return args if isinstance(args, dict) else {}


# What a URL may hold as it is (printable ASCII but space); the rest is percent-encoded.
_URL_SAFE = "".join(chr(code) for code in range(0x21, 0x7F))


class HttpAnswer:
    """A whole HTTP answer (status, headers, body) that DaCHS's ``dlget`` renderer
    hands the request to: a core's result that is neither data nor a file."""


    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @classmethod
    def of(cls, decision: decisions.Redirect) -> HttpAnswer:
        if decision.location is not None:
            # An HTTP header is ASCII: percent-encode the rest of a replica's URL.
            location = urllib.parse.quote(decision.location, safe=_URL_SAFE)
            text = f"See {location}\n".encode()
            return cls(decision.status, {"location": location,
                                         "content-type": "text/plain; charset=utf-8"}, text)
        headers = {"content-type": dali.ERROR_MEDIA_TYPE}
        if decision.retry_after is not None:
            headers["retry-after"] = str(decision.retry_after)
        return cls(decision.status, headers, dali.error_document(decision.message or "error"))

    def render(self, request: Any) -> Any:
        from twisted.web import server

        # DaCHS's dlget renderer names a file to save (from the ID, as for a
        # cutout); a redirect or an error is no such file.
        request.responseHeaders.removeHeader("content-disposition")
        request.setResponseCode(self.status)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        request.setHeader("content-length", str(len(self.body)))
        request.write(self.body)
        request.finish()
        return server.NOT_DONE_YET


class RucioDatalinkCore(datalink.DatalinkCore):
    """A datalink core whose IDs are Rucio DIDs and whose links are ranked replicas.

    The table and the response structure come from the RD ``rucio/rucio``
    (named rather than taken from the service, so that the core can serve
    from another RD too).
    """

    contract_rd = "rucio/rucio"
    link_rows: list[Any] = []  # an adapted core's rows, in the answer's order

    @property
    def contract(self) -> Any:
        return base.caches.getRD(self.contract_rd)

    def completeElement(self, ctx: Any) -> None:
        # The parameters are the contract RD's (the one being parsed, so this RD).
        for column in self.rd.getById("dl_parameters").params:
            description = column.description
            if column.name == "sort":
                description = f"{description} {sort_parameter_description()}"
            self.inputKeys.append(svcs.InputKey.fromColumn(
                column, multiplicity="single", description=description))
        super().completeElement(ctx)
        install_client_hook()
        install_dachs_logging()
        install_server_fixes()
        if isinstance(self.parent, svcs.Service):
            # The contract RD may be the one being loaded: name the table lazily.
            install_availability(self.parent, self._main_table)
            # The RD's services so far (the cone search) and this one, being made.
            install_data_updated([*self.rd.services, self.parent])

    def adaptForRenderer(self, renderer: Any, queryMeta: Any) -> Any:
        if renderer.name == "dlget":
            return self._adapt_for_dlget(queryMeta)
        if renderer.name != "dlmeta":
            return self
        # The service adds DaCHS's DALI keys after this core is built (and a
        # custom core gets no parse context), so the key is relaxed here, before
        # DaCHS validates the request's parameters against it.
        _accept_votable_responseformats(self.parent)
        try:
            result = decisions.answer(_request_args(), _client_facts(queryMeta),
                                      queryMeta["dbLimit"], self._service)
        except links.UsageError as exc:
            raise base.ValidationError(str(exc), exc.parameter or "ID") from None

        adapted = self._adapted()
        adapted.run = adapted.runForMeta
        inputs = self._soda_inputs()
        # In the answer's order, so that each ID's rows stay together (DataLink 3.2):
        # links-table rows, and the SODA descriptors whose #cutout rows go between them.
        adapted.link_rows = [ExternalSodaDescriptor(row, inputs)
                             if isinstance(row, decisions.SodaLink) else _this_row(row)
                             for row in result.rows]
        adapted.datalinkLinks = [row for row in adapted.link_rows if isinstance(row, dict)]
        adapted.datalinkEndpoints = [row for row in adapted.link_rows
                                     if isinstance(row, ExternalSodaDescriptor)]
        adapted.descriptors, adapted.errors = [], []
        adapted.overflowed = result.overflowed
        adapted.choice_info = result.ranking
        return adapted

    def _adapted(self) -> Any:
        """A copy of this core for one request (never cached by DaCHS)."""
        adapted = self.change(inputTable=base.makeStruct(
            svcs.InputTD, inputKeys=self.inputKeys[:], exclusive=True))
        adapted.nocache = True
        return adapted

    def _adapt_for_dlget(self, queryMeta: Any) -> Any:
        """``dlget``: the same decision as ``dlmeta``, answered as a redirect (303)
        to the replica it puts first, or as a DALI error document."""
        decision = decisions.redirect(_request_args(), _client_facts(queryMeta), self._service)
        adapted = self._adapted()
        adapted.run = lambda service, inputTable, queryMeta: HttpAnswer.of(decision)
        return adapted

    def _service(self) -> tuple[links.ReplicaResolver, config.Settings]:
        """The process's shared resolver and settings (what the decisions ask for)."""
        return _shared_resolver(self._main_table)

    def _main_table(self) -> str:
        """The published table's qualified name (from the contract RD)."""
        return self.contract.getById("main").getQName()

    def _soda_inputs(self) -> list[Any]:
        """The SODA descriptors' input keys, made once from the RD's soda_inputs params."""
        keys = getattr(self, "_soda_input_keys", None)
        if keys is None:
            keys = [svcs.InputKey.fromColumn(param)
                    for param in self.contract.getById("soda_inputs").params]
            self._soda_input_keys = keys
        return keys

    def getDatalinksResource(self, ctx: Any, service: Any) -> Any:
        rows = [row if isinstance(row, dict) else _link_row(
                    ID=row.pubDID,
                    service_def=ctx.getOrMakeIdFor(row, suggestion=row.id_suggestion),
                    description=row.description, semantics="#cutout",
                    content_type="application/fits", site=row.site_name)
                for row in self.link_rows]
        data = rsc.makeData(self.contract.getById("make_links"), forceSource=rows)
        data.setMeta("_type", "results")
        resource = votablewrite.makeResource(votablewrite.VOTableContext(tablecoding="td"), data)
        # A MUST since DataLink 1.1 (section 3.3.1).
        return resource[V.INFO(name="standardID", value=DATALINK_STANDARD_ID)]

    def _iterAccessResources(self, ctx: Any, service: Any) -> Any:
        for endpoint in self.datalinkEndpoints:
            yield endpoint.asVOT(ctx)

    def finalize(self) -> None:
        """Let the garbage collector have this request's copy: its circles broken.

        (DaCHS's DatalinkCore.finalize first looks through every attribute of
        the core for memoized functions to forget, a twentieth of an answer's
        time; this core and its copies memoize none.)
        """
        self.breakCircles()
        self.run = None  # (the copy's run is its own bound runForMeta: a circle too)

    def runForMeta(self, service: Any, inputTable: Any, queryMeta: Any) -> Any:
        try:
            response_media_type(inputTable.getParam("responseformat"))
            # Without any ID the answer is the normal document with no rows
            # (DataLink 1.1, section 3.2.1: not an error).
            ctx = votablewrite.VOTableContext(tablecoding="td")
            vot = V.VOTABLE[
                self.getDatalinksResource(ctx, service),
                self._iterAccessResources(ctx, service)]
            if self.choice_info is not None:
                sort, how = self.choice_info
                vot[V.INFO(name="replica_ranking", value=sort)[how]]
            if self.overflowed:
                vot[V.INFO(name="QUERY_STATUS", value="OVERFLOW")[
                    f"Results cropped at MAXREC (or at most {decisions.MAX_IDS} IDs per request)."]]
            else:
                vot[V.INFO(name="QUERY_STATUS", value="OK")]
            return response_media_type(inputTable.getParam("responseformat")), vot.render()
        finally:
            self.finalize()
