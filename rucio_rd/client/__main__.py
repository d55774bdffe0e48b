"""``python3 -m rucio_rd.client``: find a file, get it from the nearest working
replica, optionally cut it out through SODA and draw it.

Exit status: 0 done, 1 nothing could be delivered (each failure said), 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from rucio_rd import client
from rucio_rd.client.links import LinksError

EPILOG = """\
Token (the first given is used): --token-file FILE; --rucio URL --username USER
(password from --password-file, $RUCIO_PASSWORD or a prompt); --rucio URL --oidc
(Rucio's interactive OIDC login, as in the notebook); $BEARER_TOKEN,
$RUCIO_AUTH_TOKEN or $BEARER_TOKEN_FILE.  The token goes only to the hosts of the
replica or SODA service in use, never to the cone or DataLink service.

Example (the demo):
  python3 -m rucio_rd.client --cone http://localhost:8080/rucio/rucio/cone/scs.xml \\
      --pos 53.75308 -24.93365 --radius 1 --client-ip 130.246.210.120 \\
      --must-include-soda --rucio http://127.0.0.1:18100 --username astronomer \\
      --password-file .stack/demo/rucio/astronomer-password \\
      --circle 53.75308 -24.93365 0.05 --png
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rucio-rd-client", description=__doc__.split("\n\n")[0],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("which file")
    what.add_argument("--cone", metavar="URL", help="a Simple Cone Search service")
    what.add_argument("--pos", nargs=2, type=float, metavar=("RA", "DEC"),
                      help="the cone's centre in degrees")
    what.add_argument("--radius", type=float, default=0.1, help="the cone's radius in degrees")
    what.add_argument("--row", type=int, default=0, help="which result (0: the nearest)")
    what.add_argument("--links", metavar="URL",
                      help="a DataLink URL (a result's access_url) instead of a cone search")
    what.add_argument("--client-ip", metavar="ADDRESS",
                      help="locate the replicas' distances from this address")
    what.add_argument("--must-include-soda", action="store_true",
                      help="ask for replicas at sites with a SODA service first")
    token = parser.add_argument_group("token")
    token.add_argument("--token-file", metavar="FILE")
    token.add_argument("--rucio", metavar="URL", help="the Rucio server to log in to")
    token.add_argument("--account", help="the Rucio account (default: the username)")
    token.add_argument("--username")
    token.add_argument("--password-file", metavar="FILE")
    token.add_argument("--oidc", action="store_true", help="log in with Rucio's OIDC flow")
    token.add_argument("--allow-http-token", action="store_true",
                       help="send the token over plain http to other machines too "
                            "(otherwise only over https, or http to this machine)")
    out = parser.add_argument_group("what to do")
    out.add_argument("-o", "--output", default=".", metavar="DIR")
    out.add_argument("--no-download", action="store_true",
                     help="skip the whole file (e.g. for a cutout only)")
    out.add_argument("--circle", nargs=3, type=float, metavar=("RA", "DEC", "R"),
                     help="SODA cutout: a circle in degrees")
    out.add_argument("--band", nargs=2, type=float, metavar=("LOW", "HIGH"),
                     help="SODA cutout: wavelengths in metres")
    out.add_argument("--png", nargs="?", const="", metavar="FILE",
                     help="draw the result (the cutout if made) into a PNG")
    out.add_argument("--channel", type=int, help="the cube's channel to draw")
    return parser


def _token(args: argparse.Namespace) -> client.Token | None:
    if args.token_file:
        return client.file_token(args.token_file)
    if args.rucio and args.oidc:
        return client.oidc_token(args.rucio, args.account,
                                 show=lambda text: print(text, file=sys.stderr))
    if args.rucio and args.username:
        if args.password_file:
            try:
                password = Path(args.password_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise client.TokenError(f"cannot read the password file {args.password_file}: "
                                        f"{getattr(exc, 'strerror', None) or exc}") from None
        elif os.environ.get("RUCIO_PASSWORD"):
            password = os.environ["RUCIO_PASSWORD"]
        else:
            try:
                password = getpass.getpass(f"Rucio password of {args.username}: ")
            except EOFError:
                raise client.TokenError("no password: give --password-file or "
                                        "$RUCIO_PASSWORD (there is no terminal to ask)"
                                        ) from None
        return client.userpass_token(args.rucio, args.account or args.username,
                                     args.username, password)
    return client.environment_token()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _access_url(args: argparse.Namespace) -> str:
    if args.links:
        return args.links
    results = client.search(args.cone, args.pos[0], args.pos[1], args.radius)
    if not 0 <= args.row < len(results):
        raise LinksError(f"--row {args.row}: the cone search found {len(results)} rows")
    row = results[args.row]
    names = set(results.fieldnames)
    if "access_url" not in names:
        raise LinksError(f"the cone search at {args.cone} gives no access_url column")
    what = row["obs_id"] if "obs_id" in names else row["access_url"]
    where = f" at {row['_r']:.4f} deg" if "_r" in names else ""
    _say(f"found {len(results)} file(s); row {args.row}: {what}{where}")
    return str(row["access_url"])


def run(args: argparse.Namespace, parameters: dict[str, str] | None) -> int:
    access_url = _access_url(args)
    never = [url for url in (args.cone, access_url) if url]
    links = client.links(access_url, client_ip_address=args.client_ip,
                         must_include_soda=args.must_include_soda)
    _say(f"{links.did}: {len(links.replicas)} replica(s), SODA at "
         f"{', '.join(site or '?' for site in links.soda_sites()) or 'no site'}")
    for number, replica in enumerate(links.replicas):
        _say(f"  {number}. {replica.description or replica.url}")
    token = _token(args)
    if token is not None:
        _say(f"token: from {token.source}")
    drawn = None
    first_site = links.replicas[0].site if links.replicas else None
    if not args.no_download:
        got = client.download(links, args.output, token, progress=client.ProgressBar(),
                              report=lambda line: _say(f"  failed: {line}"), never=never,
                              allow_http=args.allow_http_token)
        check = f"adler32 {got.adler32} verified" if got.verified else "no checksum given"
        print(f"{got.path} ({got.size:,} bytes from {got.replica.where}, {check})")
        drawn, first_site = got.path, got.replica.site
    if parameters is not None:
        made = client.cutout(links, parameters, args.output, token, first_site=first_site,
                             never=never, report=lambda line: _say(f"  failed: {line}"),
                             allow_http=args.allow_http_token)
        print(f"{made.path} ({made.size:,} bytes, cut out by SODA at "
              f"{made.endpoint.site or made.endpoint.access_url})")
        drawn = made.path
    if args.png is not None and drawn is not None:
        print(client.quicklook(drawn, args.png or None, args.channel))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.links and not (args.cone and args.pos):
        parser.error("give --cone URL --pos RA DEC, or --links URL")
    if args.no_download and not (args.circle or args.band):
        parser.error("--no-download leaves nothing to do without --circle or --band")
    try:
        # Bad cutout parameters are a usage error before anything is asked.
        parameters = (client.soda_parameters(args.circle, args.band)
                      if args.circle or args.band else None)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return run(args, parameters)
    except (client.TokenError, client.DownloadError, client.CutoutError, LinksError,
            client.QuicklookError, OSError, ValueError) as exc:
        _say(f"rucio-rd-client: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
