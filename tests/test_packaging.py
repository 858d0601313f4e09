"""The wheel and the sdist (issue 22): built, checked, and installed next to a stand-in top-level ``bot``.

The repository keeps a folder per room; the wheel installs them under the one ``mafioso`` namespace, so a user
project with its own ``bot`` package (python-discord's is called ``bot``) is never shadowed by ours.
"""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = """
import pathlib, bot, mafioso
assert bot.WHO == "the user's own bot", bot
import mafioso.bot.discord_bot, mafioso.worker.http_api, mafioso.trainer.evaluate, mafioso.core.config
import mafioso.worker.fast_decode  # imports the architectures of mafioso.worker.models
from mafioso import prompts
assert "### CODE:" in prompts.render_prompt("x = 1")
here = pathlib.Path(mafioso.__file__).parent
assert "site-packages" in str(here), here
assert (here / "adapter" / "adapter_model.safetensors").is_file()
assert (here / "adapter-qwen2.5-coder-0.5b" / "mafioso.json").is_file()
print("ok", here)
"""


def _venv(path: Path) -> Path:
    """A fresh venv that borrows this environment's packages (torch, transformers...) but not its mafioso."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_wheel_and_sdist_build_check_and_install_under_one_namespace(tmp_path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    wheel, sdist = next(dist.glob("*.whl")), next(dist.glob("*.tar.gz"))
    if subprocess.run([sys.executable, "-c", "import twine"], capture_output=True).returncode == 0:
        checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    user = tmp_path / "project"
    (user / "bot").mkdir(parents=True)
    (user / "bot" / "__init__.py").write_text('WHO = "the user\'s own bot"\n')
    for name, artefact in (("from-wheel", wheel), ("from-sdist", sdist)):
        python = _venv(tmp_path / name)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                        str(artefact)], check=True, capture_output=True, cwd=tmp_path)
        ran = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, cwd=user)
        assert ran.returncode == 0 and ran.stdout.startswith("ok"), ran.stderr[-2000:]
        cli = subprocess.run([str(tmp_path / name / "bin" / "mafioso"), "--help"], capture_output=True, text=True,
                             cwd=user)
        assert cli.returncode == 0 and "explain" in cli.stdout
