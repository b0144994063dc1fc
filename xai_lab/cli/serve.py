"""``xai-lab serve``, ``xai-lab invite`` and the serving half of ``xai-lab demo``.

`serve` checks everything it can before starting Streamlit - the designs parse, their case
sets are prepared, the database opens, the port is free, the researcher password is usable -
so a misconfiguration is one line and exit 2 rather than a broken page. Then it runs
``streamlit run xai_lab/ui/entry.py`` with the registered study ids in ``XAI_LAB_STUDIES`` and settings
suited to a study: headless, no usage statistics (no network calls from participants'
browsers), no developer toolbar, no tracebacks in the browser.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import socket
import sys
from pathlib import Path

from xai_lab.cli.common import add_study_choice, open_study_service, split_study_choice
from xai_lab.errors import ConfigError
from xai_lab.paths import HOME_ENV, lab_home

DEMO_DESIGN = Path(__file__).resolve().parents[2] / "studies" / "demo.toml"
SERVED_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STREAMLIT_SETTINGS = {
    "server.headless": "true",
    "browser.gatherUsageStats": "false",
    "client.toolbarMode": "viewer",
    "client.showErrorDetails": "none",  # participants never see tracebacks (or file paths)
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "global.developmentMode": "false",
    # Streamlit runs a full gc.collect(2) after every script run; with PyTorch and the study's
    # images in memory that took most of each run's time (py-spy, benchmarks/ui_bench.py).
    "runner.postScriptGC": "false",
    # calm blue instead of Streamlit's red for buttons and sliders (red reads as "danger")
    "theme.primaryColor": "#1f5fa8",
    # Websocket messages, in MB (Streamlit's default 200 buffers 4 x 150 MB frames: +426 MB). The
    # pages send clicks and small JSON; what they receive is text, tables and media URLs.
    "server.maxMessageSize": "16",
}


def add_serve_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the study UI (participant, researcher and trainer pages)",
                                description="Serve prepared studies in the browser. Participants open "
                                            "/?study=ID&code=CODE (or a personal link from 'xai-lab invite'); "
                                            "researchers /researcher; trainers /trainer.")
    add_study_choice(serve, many=True)
    _server_options(serve)
    serve.set_defaults(run=_run_serve)

    invite = commands.add_parser("invite", help="enrol N participants now and write their personal links (CSV)",
                                 description="Each link carries a fresh token; the token is stored only as a hash, "
                                             "so this file is the only copy: keep it safe.")
    add_study_choice(invite)
    invite.add_argument("--n", type=int, required=True, help="number of links")
    invite.add_argument("--base-url", default="http://localhost:8501", help="the server's public address")
    invite.add_argument("--out", required=True, help="CSV file to write (participant number, link)")
    invite.add_argument("--database", help="database URL (default: $XAI_LAB_DATABASE_URL or the lab's SQLite file)")
    invite.set_defaults(run=_run_invite)


def add_demo_serve_options(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--no-serve", action="store_true",
                      help="prepare the demo study and print its URLs, but do not start the server")
    _server_options(demo)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 behind a reverse proxy)")
    parser.add_argument("--base-url", default=None, help="public address printed in the links "
                                                         "(default http://ADDRESS:PORT)")
    parser.add_argument("--database", help="database URL (default: $XAI_LAB_DATABASE_URL, else "
                                           "sqlite:///$XAI_LAB_HOME/xai_lab.db)")


def _run_serve(args: argparse.Namespace) -> int:
    files, ids = split_study_choice(args.design, args.study)
    if not files and not ids:
        raise ConfigError("name at least one study to serve: --design studies/demo.toml (a prepared design) or "
                          "--study ID (a registered study), or run 'xai-lab demo'")
    return serve(args, files, registered=ids)


def serve(args: argparse.Namespace, files: list[Path], start: bool = True, registered: list[str] = ()) -> int:
    from xai_lab.store.database import open_database
    from xai_lab.study.access import admin_password, enrolment_code, trusted_proxies
    from xai_lab.study.catalogue import STUDIES_ENV, open_catalogue
    from xai_lab.study.serve_setup import register_design_files
    _quiet_cache_warnings()
    from xai_lab.ui.screens import check_screens

    check_screens()  # a step kind without a screen stops here, not in front of a participant
    _check_port(args.port, args.address, must_be_free=start)
    proxies = trusted_proxies()
    engine = open_database(args.database)
    ids = register_design_files(engine, files)
    catalogue = open_catalogue(engine, tuple(ids + [study_id for study_id in registered if study_id not in ids]))
    base = (args.base_url or f"http://{'localhost' if args.address in ('127.0.0.1', '0.0.0.0') else args.address}"
                             f":{args.port}").rstrip("/")
    for study_id in catalogue:
        print(f"participant ({study_id}): {base}/?study={study_id}&code={enrolment_code(engine, study_id)}")
    password = admin_password()
    print(f"researcher: {base}/researcher" if password else
          "researcher: dashboard OFF - set XAI_LAB_ADMIN_PASSWORD (8+ characters) or admin_password in "
          ".streamlit/secrets.toml to serve it")
    print(f"trainer:    {base}/trainer")
    if not start:
        return 0
    env = {**os.environ, HOME_ENV: str(lab_home().resolve()),
           STUDIES_ENV: ",".join(catalogue),
           # uvicorn believes X-Forwarded-For only from these proxies (its own default trusts any
           # loopback client, which could then pick a fresh throttle identity per request).
           "FORWARDED_ALLOW_IPS": ",".join(proxies),
           # The server explains one image at a time (trainer page). With torch's default of a thread
           # per core, each such op spins on every core: on this 2-core machine at load 5 a saliency
           # map took 0.64 s with 2 threads and 0.017 s with 1, the randomisation check 3.4 s vs 0.3 s.
           **SERVED_THREADS}
    if args.database:
        env["XAI_LAB_DATABASE_URL"] = args.database
    return _run_streamlit(args.port, args.address, env)


def streamlit_settings() -> dict[str, str]:
    from xai_lab.data.upload_limits import MAX_UPLOAD_BYTES

    # Uploads (trainer page) above the app's own limit are refused by the server before they are
    # held in memory; Streamlit's default is 200 MB.
    return {**STREAMLIT_SETTINGS, "server.maxUploadSize": str(MAX_UPLOAD_BYTES // (1024 * 1024))}


def _check_port(port: int, address: str, must_be_free: bool) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be from 1 to 65535, got {port}")
    if not must_be_free:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            raise ConfigError(f"cannot listen on {address}:{port} ({error.strerror}); choose another --port or "
                              "stop the program using it") from None


def _run_streamlit(port: int, address: str, env: dict[str, str]) -> int:
    entry = Path(__file__).resolve().parents[1] / "ui" / "served_app.py"
    command = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.port", str(port),
               "--server.address", address]
    for key, value in streamlit_settings().items():
        command += [f"--{key}", value]
    sys.stdout.flush()
    # Replace this process with Streamlit's: signals (Ctrl-C, a supervisor's SIGTERM) reach the
    # server directly and no parent is left behind to orphan it.
    os.execve(sys.executable, command, env)
    return 0  # not reached


def run_demo_server(args: argparse.Namespace) -> int:
    """After `ensure_demo_assets`: prepare the demo study, print the three URLs, serve."""
    from xai_lab.store.database import open_database
    from xai_lab.study.access import PASSWORD_ENV, admin_password
    from xai_lab.study.design_file import load_design
    from xai_lab.study.prepare import prepare_study

    design_file = DEMO_DESIGN if DEMO_DESIGN.is_file() else Path("studies/demo.toml")
    if not design_file.is_file():
        raise ConfigError(f"the demo design is missing ({DEMO_DESIGN}); run xai-lab demo from the repository")
    design = load_design(design_file)
    prepare_study(design, open_database(args.database), say=lambda line: None)
    if admin_password() is None:
        os.environ[PASSWORD_ENV] = secrets.token_urlsafe(12)  # for this run only; the child inherits it
        print(f"researcher password for this run: {os.environ[PASSWORD_ENV]} (set {PASSWORD_ENV} to choose one)")
    return serve(args, [design_file], start=not args.no_serve)


def _run_invite(args: argparse.Namespace) -> int:
    from xai_lab.private_files import open_private

    if not 1 <= args.n <= 10_000:
        raise ConfigError(f"--n must be from 1 to 10000, got {args.n}")
    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"{out} exists; choose a new file (links are never overwritten: they hold the only "
                          "copy of their tokens)")
    service = open_study_service(args)
    design = service.design
    base = args.base_url.rstrip("/")
    with open_private(out, "x", newline="") as handle:  # the only copy of the tokens: owner-only (0600)
        writer = csv.writer(handle)
        writer.writerow(["number", "link"])
        for number in range(1, args.n + 1):
            writer.writerow([number, f"{base}/?study={design.id}&token={service.enrol(via='invite')}"])
    print(f"wrote {args.n} personal links for {design.id!r} to {out}; it is the only copy of the tokens")
    return 0


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="build the default dataset and model if absent, prepare the demo study "
                                            "and serve it",
                               description="Build the default synthetic dataset and its calibrated model if they are "
                                           "missing, print the model card, prepare studies/demo.toml and serve it "
                                           "(participant, researcher and trainer URLs are printed).")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    add_demo_serve_options(demo)
    demo.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from xai_lab.cli.model import describe_model_card
    from xai_lab.model.quality import quality_verdict
    from xai_lab.workflows import ensure_demo_assets

    # before minutes of building: a busy port is one line now, not after the data and model exist
    _check_port(args.port, args.address, must_be_free=not args.no_serve)
    dataset, card, folder = ensure_demo_assets(progress=not args.quiet)
    print(f"dataset '{dataset.name}': {dataset.card.n_images} images, {dataset.card.image_size[0]} px, "
          f"classes {', '.join(dataset.class_names)} ({dataset.path})")
    print(describe_model_card(card, folder))
    print(f"  {quality_verdict(card).sentence}")  # prepare refuses the demo below it, in one line
    return run_demo_server(args)


def _quiet_cache_warnings() -> None:
    """Importing the screens here, outside the served app, defines their `st.cache_data` functions with
    no Streamlit runtime; Streamlit warns "No runtime found" once per function, which means nothing
    for this check and alarmed the first run's output."""
    import logging

    import streamlit  # noqa: F401  (creates Streamlit's loggers, so the level set below is kept)

    logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)
