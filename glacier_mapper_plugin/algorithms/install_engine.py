"""glacier_mapper:install_engine: creates or updates the engine's environment from QGIS."""
import subprocess
from pathlib import Path

from qgis.core import (QgsProcessingException, QgsProcessingOutputString, QgsProcessingParameterFile,
                       QgsProcessingParameterString)

from ..engine import client, platforms
from ..engine.install import base_python
from .base import FeedbackListener, GlacierMapperAlgorithm, profile_dir, string_enum


class InstallEngineAlgorithm(GlacierMapperAlgorithm):
    ALG_ID = "install_engine"
    DISPLAY = "Install engine"
    GROUP, GROUP_ID = "Set-up", "setup"
    NEEDS_ENGINE = False
    HELP = ("Creates (or updates) the engine: a Python environment of Glacier Mapper's own, "
            "separate from QGIS's, with torch, segmentation-models-pytorch, rasterio, pystac-client, "
            "xgboost and the other packages the algorithms run with. Every algorithm runs in that "
            "environment as a separate process, so QGIS never loads them. Default location: the "
            "profile folder's python/glacier_mapper_engine (on Windows %LOCALAPPDATA%\\GlacierMapper, "
            "short enough for torch's files); remove that folder and the profile's "
            "python/glacier_mapper_engine.json to uninstall. About 1-6 GB depending on the torch "
            "build (the log says how much for this computer, and a disk too small is refused before any "
            "download); a second run only checks it, and a run that was stopped is finished by running "
            "again. It ends with a self-test: a U-Net run on the device the algorithms will use (a CUDA "
            "GPU, an Apple GPU or the CPU), named in the log.")
    PARAM_HELP = {
        "WHEELHOUSE": "Optional folder of wheels for a machine without internet (made elsewhere "
                      "with `pip download -r requirements.txt -d wheels`, requirements.txt being "
                      "glacier_mapper_plugin/engine/requirements.txt).",
        "ENGINE_FOLDER": "Optional folder for the environment (default: in the QGIS profile).",
        "ENGINE_PYTHON": "The engine's Python interpreter.",
        "TORCH": "Which torch: default (CUDA on Linux, CPU-only on Windows, Apple GPUs on macOS), cuda (NVIDIA "
                 "GPUs, also on Windows, from PyTorch's own index) or cpu (Linux: a fifth of the download).",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterFile("WHEELHOUSE", "Wheelhouse (offline install)",
                                                     QgsProcessingParameterFile.Behavior.Folder, optional=True))
        self.addParameter(QgsProcessingParameterString("ENGINE_FOLDER", "Environment folder", optional=True))
        self.addParameter(string_enum("TORCH", "Torch build", list(platforms.TORCH_CHOICES)))
        self.addOutput(QgsProcessingOutputString("ENGINE_PYTHON", "Engine Python"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        profile = profile_dir()
        folder = self.parameterAsString(parameters, "ENGINE_FOLDER", context).strip()
        venv = Path(folder) if folder else client.default_engine_dir(profile) / "venv"
        cmd = [str(base_python()), "-m", "glacier_mapper_plugin.engine.install", "--json",
               "--profile", str(profile), "--venv", str(venv)]
        cmd += ["--torch", self.parameterAsEnumString(parameters, "TORCH", context) or "default"]
        wheelhouse = self.parameterAsFile(parameters, "WHEELHOUSE", context)
        if wheelhouse:
            cmd += ["--wheelhouse", wheelhouse]
        listener = FeedbackListener(feedback)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=client._engine_env(), cwd=str(client.PLUGIN_DIR.parent))
        error = None
        for line in proc.stdout:
            if feedback.isCanceled():
                proc.terminate()
                proc.wait()
                raise QgsProcessingException("Cancelled: the engine's environment may be incomplete; "
                                             "run Install engine again to finish it.")
            msg = client.relay(line, listener)
            if msg and "error" in msg:
                error = msg["error"]
        if proc.wait() != 0 or error:
            raise QgsProcessingException(f"Installing the engine failed: {error or f'exit code {proc.returncode}'}")
        return {"ENGINE_PYTHON": str(client.engine_python(profile))}

