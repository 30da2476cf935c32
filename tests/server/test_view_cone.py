"""The map's view cone (server/static/map.js viewCone), run in node when it is installed."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

MAP_JS = Path(__file__).resolve().parents[2] / "src" / "img2gps" / "server" / "static" / "map.js"


@pytest.mark.parametrize("heading, d_lat, d_lon", [(0, 1, 0), (90, 0, 1), (180, -1, 0), (270, 0, -1)])
def test_view_cone_points_along_the_compass_heading(heading, d_lat, d_lon):
    node = shutil.which("node")
    if not node:
        pytest.skip("node not installed")
    js = (f"global.window = {{}}; require({json.dumps(str(MAP_JS))});"
          f"console.log(JSON.stringify(window.Img2GPSMap.viewCone([40, -75], {heading}, 20, 50)));")
    pts = json.loads(subprocess.run([node, "-e", js], capture_output=True, text=True, check=True).stdout)
    assert pts[0] == [40, -75] and pts[-1] == [40, -75]  # a closed wedge with its apex at the camera
    mid = pts[len(pts) // 2]
    lat_m, lon_m = (mid[0] - 40) * 111195, (mid[1] + 75) * 111195 * 0.766  # cos(40 deg)
    assert abs(lat_m - 50 * d_lat) < 1 and abs(lon_m - 50 * d_lon) < 1  # 50 m along the heading
    spread = max(abs((p[1] + 75) * 85180 * d_lat) + abs((p[0] - 40) * 111195 * d_lon) for p in pts[1:-1])
    assert 15 < spread < 18  # half-width 20 deg at 50 m: 50 sin 20 = 17.1 m to either side
