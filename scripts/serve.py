"""A live mask-compliance monitor in the browser: tracked people, counts, compliance rate and events with face crops.
python scripts/serve.py --source 0                       (webcam 0, the shipped model; open http://127.0.0.1:8000/)
python scripts/serve.py --source street.mp4 rtsp://cam/stream --model workspace/exported-models/RUN/model_int8.tflite
python scripts/serve.py --source 0 --host 0.0.0.0 --token_file token.txt     (other machines: a token is required)"""

import argparse

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    from mask_od.cli import at_least, error_exit, fraction
    from mask_od.monitor import ServeConfig
    from mask_od.track import BARE, TrackerConfig

    d, t = ServeConfig(), TrackerConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, choices=[320, 640], default=None, help="input size of the shipped model (without "
                   "--model): 320 for webcam close-ups (fast), 640 for door, street and crowd cameras (small faces, ~4x the time; default 320)")
    p.add_argument("--source", nargs="+", default=["0"], help="camera indexes, video files, image folders, rtsp:// or http:// URLs (default: camera 0)")
    p.add_argument("--model", default=None, help="exported saved_model/ folder or .tflite file (default: the shipped model)")
    p.add_argument("--score_threshold", type=fraction, default=0.3, help="detections handed to the tracker, 0-1 (weak ones "
                   "only extend people already tracked; a new person needs activation_threshold + 0.1; default %(default)s)")
    p.add_argument("--activation_threshold", type=fraction, default=t.activation_threshold,
                   help="ByteTrack: a new person starts from a detection scoring at least this + 0.1 (default %(default)s)")
    p.add_argument("--min_frames", type=at_least(1), default=t.min_frames, help="frames before a track counts as a person / "
                   "an event (default %(default)s)")
    p.add_argument("--lost_s", type=at_least(0.01, float), default=t.lost_s, help="seconds: a person unseen this long is "
                   "gone, and counts as a new person if seen again (default %(default)s)")
    p.add_argument("--num_threads", type=at_least(1), default=2, help="CPU threads of the TFLite interpreter (default %(default)s)")
    p.add_argument("--host", default=d.host, help="127.0.0.1 (default), ::1 or localhost serve this machine only; any other "
                   "address (0.0.0.0 or :: for every one) needs a token")
    p.add_argument("--port", type=int, default=d.port, help="0 takes a free port (default %(default)s)")
    p.add_argument("--token_file", default=None, help="file holding the token every request must carry (16 to 256 characters "
                   "of A-Z a-z 0-9 _ - . ~)")
    p.add_argument("--token", default=None, help="the token itself (visible to other users in the process list: prefer --token_file)")
    p.add_argument("--loop", action="store_true", help="play video files and folders again when they end")
    p.add_argument("--record_dir", default=None, help="write the annotated video of each source here (sourceN.mp4)")
    p.add_argument("--event_log", default=None, help="events as JSON lines (.jsonl)")
    p.add_argument("--overwrite", action="store_true", help="replace existing recordings / event log")
    p.add_argument("--max_events", type=int, default=d.max_events, help="events and face crops kept in memory (default %(default)s)")
    p.add_argument("--stream_width", type=int, default=d.stream_width, help="largest width of the frames sent to browsers, px (default %(default)s)")
    p.add_argument("--alert_classes", nargs="*", default=None, help="classes whose people raise an alert (an ALERT: "
                   "line), once per person: events, and so alerts, are for " + " and ".join(BARE) + " (the default); none: "
                   "--alert_classes alone")
    p.add_argument("--alert_cooldown_s", type=at_least(0.0, float), default=0.0, help="seconds between two alerts (each "
                   "person alerts once anyway; default %(default)s)")
    a = p.parse_args(argv)
    if a.token is not None and a.token_file is not None:
        p.error("give the token once: --token_file or --token, not both")

    from mask_od.detect import Detector
    from mask_od.errors import MaskODError
    from mask_od.live import AlertHook, default_alert_classes
    from mask_od.serve import check_port, read_token, serve, validate_config
    from mask_od.shipped import live_model

    try:
        token = read_token(a.token_file) if a.token_file else a.token
        tracker = TrackerConfig(activation_threshold=a.activation_threshold, lost_s=a.lost_s, min_frames=a.min_frames)
        cfg = ServeConfig(sources=[int(s) if s.isdigit() else s for s in a.source], host=a.host, port=a.port, token=token,
                          loop=a.loop, record_dir=a.record_dir, event_log=a.event_log, overwrite=a.overwrite,
                          max_events=a.max_events, stream_width=a.stream_width, tracker=tracker)
        validate_config(cfg)  # an unsafe bind or a port in use is refused before the model loads
        check_port(cfg)
        a.model, said = live_model(a.model, a.size)
        if said:
            print(said, flush=True)
        det = Detector(a.model, score_threshold=a.score_threshold, num_threads=a.num_threads)
        a.alert_classes = default_alert_classes(a.alert_classes, det.label_map, cfg.tracker.event_classes,
                                                cfg.tracker.event_classes, "the monitor alerts on events, which are raised for "
                                                + " and ".join(cfg.tracker.event_classes))
        alert = AlertHook(classes=a.alert_classes, cooldown_s=a.alert_cooldown_s) if a.alert_classes else None
        s = serve(cfg, det, alert, on_ready=lambda url: print(f"serving on {url}; Ctrl-C stops", flush=True))
    except (MaskODError, FileExistsError, FileNotFoundError) as e:
        return error_exit(e)
    except KeyboardInterrupt:  # before the frame loop (which ends cleanly on Ctrl-C): nothing was written
        print("stopped by Ctrl-C before it started", flush=True)
        return 130
    print(s, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
