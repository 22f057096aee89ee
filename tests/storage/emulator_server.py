"""gcp-storage-emulator's command line, with the one header TensorStore needs that it leaves out,
serving requests on threads.

TensorStore reads an object's generation from the ``x-goog-generation`` header of a media download
and passes it back as ``ifGenerationMatch`` when it updates the object (OCDBT's manifest, which
orbax writes at every checkpoint). The emulator sends the generation in the object's JSON metadata
but not as that header, so TensorStore saw generation 0 and refused its own update ("Malformed
StorageGeneration"). This adds the header to downloads; nothing else changes.

The emulator's HTTP server handles one connection at a time; a run's concurrent clients (gcsfs'
prefetching reader, orbax's metadata writer, TensorStore) then stalled it until the test timed out.
It is given http.server's ThreadingHTTPServer instead.

Run as ``python emulator_server.py start --host=127.0.0.1 --port=N --in-memory``.
"""

import sys
from http import HTTPStatus
from http import server as http_server

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_download = objects.download


def download_with_generation(request, response, storage, *args, **kwargs):
    _download(request, response, storage, *args, **kwargs)
    if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except NotFound:
            return
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj["metageneration"])


class _ThreadingServer(http_server.ThreadingHTTPServer):
    daemon_threads = True


server.server.HTTPServer = _ThreadingServer  # the emulator builds its server through this name
objects.download = download_with_generation  # objects.get serves ?alt=media through this name
for _regex, _methods in server.HANDLERS:
    for _method, _handler in list(_methods.items()):
        if _handler is _download:
            _methods[_method] = download_with_generation

if __name__ == "__main__":
    sys.exit(main())
