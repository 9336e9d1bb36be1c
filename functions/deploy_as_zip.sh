#!/usr/bin/env bash
# Package a QUADRATSEG function as nuclio.zip, with the deployment guide's arguments:
#
#   ./deploy_as_zip.sh coralsegv4 MODEL_WEIGHTS            (or coralsegbanggai)
#   ./deploy_as_zip.sh coralscopsegformer SEGFORMER_WEIGHTS SEGFORMER_CONFIG SAM_WEIGHTS
#   ./deploy_as_zip.sh gridcorners MODEL_WEIGHTS [TEMPLATE_PATH]   (or gridpose)
#   ./deploy_as_zip.sh [lama [LAMA_MODEL]]      (no argument: lama, big-lama.pt fetched at build)
#
# Options of `quadratseg package` pass through: --gpu, --tag v2, --output FILE, --force,
# --source PATH (custom model module file or folder, e.g. the DINOv2 backbone), --env NAME=VALUE,
# --name, --display-name, --description. It validates everything (names, files, extensions,
# settings, that the weights load as the function's model) before writing, and writes
# nuclio.zip in the current folder. Deploy it as docs/deployment.md shows:
#
#   mkdir -p bundles && unzip nuclio.zip -d bundles/coralsegv4
#   nuctl create project cvat --platform local    # once per Nuclio host
#   nuctl deploy --project-name cvat --path bundles/coralsegv4/nuclio --platform local
set -euo pipefail

if [ "$#" -eq 0 ]; then
    set -- lama
fi
python="${PYTHON:-python3}"
if ! "$python" -c "import quadratseg_handlers.cli.main" 2>/dev/null; then
    echo "deploy_as_zip.sh: error: $python cannot import quadratseg_handlers; install the library" \
         "(make install, then PYTHON=.venv/bin/python) or set PYTHON to its interpreter" >&2
    exit 2
fi
exec "$python" -m quadratseg_handlers package "$@"
