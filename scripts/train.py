"""Train (or resume) the detector: python scripts/train.py [config.yaml] [key=value ...] (keys of mask_od/default.yaml)."""

import sys

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        from mask_od.config import DEFAULTS_PATH

        print(__doc__ + "\n\n" + DEFAULTS_PATH.read_text())
        return 0
    from mask_od.config import build_config, parse_key_values
    from mask_od.cli import error_exit
    from mask_od.errors import MaskODError
    from mask_od.train import TrainingInterrupted, train

    files = [a for a in argv if "=" not in a]
    try:
        config = build_config(*files, **parse_key_values([a for a in argv if "=" in a]))
        r = train(config)
    except TrainingInterrupted as e:
        print(str(e), flush=True)
        return 130
    except (MaskODError, FileNotFoundError, FileExistsError) as e:
        return error_exit(e)
    print(f"done: step {r.step}, latest {r.latest_checkpoint}, best {r.best_checkpoint} (mAP@0.5 {r.best_map50})")
    print(f"TensorBoard: tensorboard --logdir {r.run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
