"""`[bundler]` options."""

from pants.engine.rules import collect_rules
from pants.option.option_types import StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class BundlerSubsystem(Subsystem):
    options_scope = "bundler"
    help = "Options of the vLLM bundle builder."

    toolchain = StrOption(
        default="",
        help=help_text(
            """
            Name of the Pants named cache holding the stage interpreter (Python 3.11 with libcst,
            torch, triton, ninja). Set by the `./pants` launcher, which creates it; the name is a
            fingerprint of the interpreter and package versions, so it is part of every stage's
            cache key.
            """
        ),
    )
    toolchain_packages = StrOption(
        default="",
        help=help_text(
            """
            A fingerprint of every package installed in the stage toolchain (`pip freeze --all`),
            set by the `./pants` launcher and put into every stage's environment, so that no
            machine is served a result computed with other package builds.
            """
        ),
    )
    runtime = StrOption(
        default="",
        help=help_text(
            """
            Name of the Pants named cache holding the bundle runtime: a venv with exactly the packages a
            bundle may declare (`3rdparty/bundle_runtime.txt`: torch CPU, triton, ninja), where stage A7
            imports the bundle. Set by the `./pants` launcher, which creates it; the name is a fingerprint
            of the interpreter and the pins, so it is part of A7's cache key.
            """
        ),
    )
    runtime_packages = StrOption(
        default="",
        help="A fingerprint of every package installed in the bundle runtime (`pip freeze --all`), set by "
        "the `./pants` launcher and put into A7's environment.",
    )
    models_dir = StrOption(
        default="models",
        help="Directory, relative to the build root, of model configs: `<org>--<name>/config.json`.",
    )


def rules():
    return collect_rules()
