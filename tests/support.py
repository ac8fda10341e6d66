"""Plain helpers the tests share: paths to the test data, and small seeded models built here.

Fixtures live in ``conftest.py``; this module holds functions and constants only, so that a test
module never imports another test module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CSDI = DATA / "csdi"  # real fundus photographs, CC BY 4.0: attribution in its README.md


def seeded_model(seed: int = 0, head=2, *, calibrate: bool = True):
    """A seeded random EfficientNet-B0; ``calibrate`` measures BatchNorm statistics on images."""
    from models import build_model

    torch.manual_seed(seed)
    model = build_model(head)
    if not calibrate:
        return model.eval()
    # Default BatchNorm statistics (mean 0, var 1) shrink activations ~50x per stage down to
    # 1e-13; statistics measured on images keep them at unit scale, as in a trained model.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        x = torch.from_numpy(np.stack(make_images(seed + 100))).permute(0, 3, 1, 2).float() / 255
        model((x - 0.45) / 0.225)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.1
        # With signed random head weights one class's map is often ReLU'd to nothing; positive
        # weights give every class a map with structure to compare.
        last = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.abs_()
    return model.eval()


def make_images(seed: int = 7) -> list[np.ndarray]:
    """Eight different 224x224 RGB images with structure (blobs at different places), not noise."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:224, 0:224]
    for _ in range(8):
        img = np.zeros((224, 224, 3), np.float32)
        for _ in range(3):
            cy, cx, r = rng.uniform(30, 194), rng.uniform(30, 194), rng.uniform(15, 45)
            colour = rng.uniform(0, 255, 3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            img = img * (1 - blob) + colour * blob
        img += rng.normal(0, 8, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1 and a free port, trust auth, in a temporary folder.

    As root the server runs as the ``postgres`` user (initdb refuses root). ``stop`` ends it by the
    PID in its ``postmaster.pid`` and removes the folder.
    """

    def __init__(self) -> None:
        import os
        import shutil
        import subprocess
        import tempfile

        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        initdb = shutil.which("initdb") or (str(found[-1]) if found else None)
        if initdb is None:
            raise RuntimeError("PostgreSQL's initdb is not installed (apt-get install postgresql)")
        self.bin = Path(initdb).parent
        self.root = Path(tempfile.mkdtemp(prefix="cataract-cam-pg-"))
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8", timeout=120)
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60",
                  "start", timeout=90)
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self._count = 0
        self._subprocess = subprocess

    def _run(self, tool: str, *args: str, timeout: float) -> None:
        import subprocess

        subprocess.run([*self._as, str(self.bin / tool), *args], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server, as the superuser postgres."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        self._count += 1
        name = f"records_{self._count}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True, connect_timeout=10) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (by PID if pg_ctl cannot) and remove its folder."""
        import os
        import shutil
        import signal
        import time

        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop", timeout=45)
        except Exception:
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


def non_eye_pictures() -> list[np.ndarray]:
    """Ordinary photographs that are not eyes (shipped inside matplotlib), whole and three crops of each."""
    import matplotlib

    from components.imaging.loading import load_rgb

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    out = []
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        image = load_rgb(folder / name)
        h, w = image.shape[:2]
        out.append(image)
        for fy, fx in ((0.0, 0.0), (0.3, 0.2), (0.5, 0.5)):
            y0, x0 = int(fy * h / 2), int(fx * w / 2)
            out.append(np.ascontiguousarray(image[y0:y0 + h // 2, x0:x0 + w // 2]))
    return out


def who(name: str):
    """A typed name as the record store takes it: an unauthenticated Identity (scripts, tests, no sign-in)."""
    from components.records import Identity

    return Identity.unauthenticated(name)


def checked(verdict: str, modality: str = "external", region: dict | None = None, **figures):
    """An attention check's result as the report and the records take it, with the given verdict and figures."""
    from components.lens.attention import AttentionResult

    return AttentionResult.from_dict({"verdict": verdict, "modality": modality, "figures": figures,
                                      "region": region or {"found": False, "modality": modality}})


def run_sql(db_url: str, *statements: str) -> None:
    """Run raw SQL statements in one transaction, around the record store (as an attacker or an admin would)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def stop(process) -> None:
    """End a server a test started, by its PID: politely, then for good after 15 s; safe when it has ended."""
    import subprocess

    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
