"""``xai-lab erase`` (erasure on request, with its audit) and ``xai-lab preregister`` (the
preregistration document and its lock)."""

from __future__ import annotations

import argparse
import getpass


def add_governance_commands(commands: argparse._SubParsersAction) -> None:
    erase = commands.add_parser("erase", help="erase a participant on request: end their participation, delete or "
                                              "keep their answers as the design's withdrawal policy says, and "
                                              "record who erased them and why",
                                description="Erasure on request (GDPR art. 17). The answers are deleted or kept "
                                            "as the design's `withdrawal` promised; an audit event records when, by "
                                            "whom and why. `--list` shows the audit trail.")
    erase.add_argument("--study", required=True, help="study id (as in the design file)")
    erase.add_argument("--participant", metavar="ID", help="the participant id (p and 12 characters), as on the "
                       "participant's last page and in the export's participants table")
    erase.add_argument("--reason", help="why, in one line (no health data): e.g. \"e-mail request of 2026-12-01\"")
    erase.add_argument("--by", default=None, help="who erases (default: your login name)")
    erase.add_argument("--list", action="store_true", help="print the study's erasures instead")
    erase.add_argument("--database", help="database URL (default: $XAI_LAB_DATABASE_URL, else "
                                          "sqlite:///$XAI_LAB_HOME/xai_lab.db)")
    erase.set_defaults(run=_run_erase)

    prereg = commands.add_parser("preregister", help="write a preregistration (Markdown and HTML, OSF template "
                                                     "sections) from a design, with its sample size from `power`, "
                                                     "and the lock `analyze --preregistration` checks",
                                 description="The hypotheses are the design's declared estimands ([analysis]); the "
                                             "sample size is simulated as `xai-lab power` does; the lock is a hash of "
                                             "the design fingerprint, [analysis] and the lab version.")
    prereg.add_argument("--design", required=True, metavar="FILE", help="design file, e.g. studies/verify_vs_rely.toml")
    prereg.add_argument("--out", required=True, metavar="DIR", help="folder for preregistration.md, .html, lock.json")
    prereg.add_argument("--author", action="append", default=[], help="an author (repeatable)")
    prereg.add_argument("--effect", action="append", default=[], metavar="SPEC",
                        help="a planted effect for the power simulation, as for `xai-lab power` (repeatable)")
    prereg.add_argument("--n", default="20,40,80", help="participants per arm to simulate (default 20,40,80)")
    prereg.add_argument("--reps", type=int, default=200, help="simulated studies per size (default 200)")
    prereg.add_argument("--alpha", type=float, default=0.05)
    prereg.add_argument("--seed", type=int, default=0)
    prereg.add_argument("--target-power", type=float, default=0.8, help="power the sample size must reach (0.8)")
    prereg.add_argument("--no-power", action="store_true", help="skip the simulation (state the size by hand)")
    prereg.set_defaults(run=_run_preregister)


def _run_erase(args: argparse.Namespace) -> int:
    from xai_lab.errors import ConfigError
    from xai_lab.store.database import open_database
    from xai_lab.study.erasure import erase_participant, erasures

    engine = open_database(args.database)
    if args.list:
        done_before = erasures(engine, args.study)
        for done in done_before:
            print(f"{done.at}  {done.participant_id}  {'deleted' if done.deleted else 'kept'}  by {done.by}: "
                  f"{done.reason}")
        if not done_before:
            print(f"no erasures in study {args.study!r}")
        return 0
    if not args.participant or args.reason is None:
        raise ConfigError("erase needs --participant ID and --reason TEXT (or --list to see earlier erasures)")
    done = erase_participant(engine, args.study, args.participant, args.reason, args.by or _login_name())
    kept = "their answers were deleted" if done.deleted else "their answers are kept (the design's withdrawal policy)"
    print(f"erased participant {done.participant_id} of study {done.study_id} at {done.at}: {kept}; "
          f"recorded as by {done.by}: {done.reason}")
    return 0


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return "unknown"


def _run_preregister(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xai_lab.analysis.power import parse_effects, power_table
    from xai_lab.analysis.preregistration import Lock, build_document, choose_size, write_preregistration
    from xai_lab.cli.common import comma_list
    from xai_lab.errors import ConfigError
    from xai_lab.study.design_file import load_design

    design = load_design(args.design)
    if not 0 < args.target_power < 1 or not 0 < args.alpha < 1:
        raise ConfigError("--target-power and --alpha must be between 0 and 1, e.g. --target-power 0.8")
    size = None
    if not args.no_power:
        try:
            sizes = [int(n) for n in comma_list(args.n) if n]
        except ValueError:
            raise ConfigError(f"--n must be comma-separated whole numbers per arm, got {args.n!r}") from None
        effects = parse_effects(args.effect)
        table = power_table(design, effects, sizes, args.reps, alpha=args.alpha, seed=args.seed)
        settings = {"sizes": sizes, "reps": args.reps, "alpha": args.alpha, "seed": args.seed,
                    "effects": ", ".join(args.effect)}
        size = choose_size(table, settings, args.target_power)
    lock = Lock.of(design)
    paths = write_preregistration(build_document(design, lock, size, args.author), lock, Path(args.out))
    print(f"preregistration of {design.id}: {paths['markdown']}, {paths['html']}; lock {lock.lock} ({paths['lock']})")
    if size is not None:
        print(f"sample size: {size.chosen} per arm" if size.chosen is not None else
              f"no simulated size reached power {args.target_power}: simulate larger --n")
    return 0
