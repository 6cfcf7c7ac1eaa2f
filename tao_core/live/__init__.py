"""What an engine adapter runs on a live cluster, without the engine: node timelines and
their samplers (``timeline``, ``sampler``), the controller session behind the engine's
controller process and the grant pool of its driver (``session``, ``grants``), the nodes a
session knows (``nodes``), the run's report (``report``) and the session token (``token``).
The adapters (``tao_ray``) wrap these objects in engine actors and calls."""
