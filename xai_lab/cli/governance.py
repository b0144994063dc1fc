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
                                                            "participant's last page and in participants.csv")
    erase.add_argument("--reason", help="why, in one line (no health data): e.g. \"e-mail request of 2026-12-01\"")
    erase.add_argument("--by", default=None, help="who erases (default: your login name)")
    erase.add_argument("--list", action="store_true", help="print the study's erasures instead")
    erase.add_argument("--database", help="database URL (default: $XAI_LAB_DATABASE_URL, else "
                                          "sqlite:///$XAI_LAB_HOME/xai_lab.db)")
    erase.set_defaults(run=_run_erase)


def _run_erase(args: argparse.Namespace) -> int:
    from xai_lab.errors import ConfigError
    from xai_lab.store.database import open_database
    from xai_lab.study.erasure import erase_participant, erasures

    engine = open_database(args.database)
    if args.list:
        for done in erasures(engine, args.study):
            print(f"{done.at}  {done.participant_id}  {'deleted' if done.deleted else 'kept'}  by {done.by}: "
                  f"{done.reason}")
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
