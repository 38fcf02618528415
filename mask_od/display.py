"""Where live frames are shown: an OpenCV window, a Tk window (a desktop window with the headless OpenCV this project
installs), inline in a Jupyter notebook, or nowhere. Each view's ``show(rgb)`` returns False once the user asked to
stop (q, Esc or the window closed). Nothing opens a window without first checking that a display exists: a GUI call
without one aborts the whole process in OpenCV."""

from __future__ import annotations

import os
import sys

import numpy as np

DISPLAYS = ("auto", "window", "notebook", "none")


def has_display() -> bool:
    """A desktop to open windows on: Windows, macOS, or X11 / Wayland with ``DISPLAY`` / ``WAYLAND_DISPLAY`` set."""
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def opencv_gui_available() -> bool:
    """True when OpenCV was built with a GUI backend and a display exists (opencv-python-headless has none)."""
    import cv2

    info = cv2.getBuildInformation()
    gui_line = next((ln for ln in info.splitlines() if ln.strip().startswith("GUI:")), "GUI: NONE")
    return "NONE" not in gui_line.upper() and has_display()


def tk_available() -> bool:
    """True when tkinter imports and an X11 display (or Windows / macOS) exists."""
    if not (sys.platform in ("win32", "darwin") or os.environ.get("DISPLAY")):
        return False
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return False
    return True


def in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None and "IPKernelApp" in get_ipython().config
    except Exception:  # noqa: BLE001
        return False


class NoView:
    """Shows nothing."""

    kind = "none"

    def show(self, rgb: np.ndarray) -> bool:
        return True

    def close(self) -> None:
        pass


class OpenCVWindow:
    """``cv2.imshow`` (needs an OpenCV built with a GUI)."""

    kind = "window"

    def __init__(self, title: str = "mask_od"):
        self.title = title

    def show(self, rgb: np.ndarray) -> bool:
        import cv2

        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()


class TkWindow:
    """A tkinter window showing frames as they come (frames larger than 90% of the screen are shrunk to fit).
    ``q``, Esc or closing the window asks to stop. Raises ``tkinter.TclError`` when the display cannot be opened."""

    kind = "window"

    def __init__(self, title: str = "mask_od"):
        import tkinter as tk

        self._tk = tk
        self.root = tk.Tk()
        self.root.title(f"{title} (q or Esc to stop)")
        self.label = tk.Label(self.root, borderwidth=0)
        self.label.pack()
        self.stop_requested = False
        self.shown = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the last frame shown
        for key in ("<Key-q>", "<Escape>"):
            self.root.bind(key, self._stop)
        self.root.protocol("WM_DELETE_WINDOW", self._stop)
        self._max = (int(self.root.winfo_screenwidth() * 0.9), int(self.root.winfo_screenheight() * 0.9))
        self._photo = None
        self.root.focus_force()  # keys reach the window at once, without a click first

    def _stop(self, *_) -> None:
        self.stop_requested = True

    def show(self, rgb: np.ndarray) -> bool:
        if self.stop_requested:
            return False
        h, w = rgb.shape[:2]
        f = min(1.0, self._max[0] / w, self._max[1] / h)
        if f < 1.0:
            import cv2

            rgb = cv2.resize(rgb, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
            h, w = rgb.shape[:2]
        ppm = b"P6 %d %d 255\n" % (w, h) + np.ascontiguousarray(rgb, np.uint8).tobytes()
        self._photo = self._tk.PhotoImage(data=ppm, format="PPM")  # keep a reference or Tk shows nothing
        self.label.configure(image=self._photo)
        self.root.update()
        self.shown += 1
        self.size = (self._photo.width(), self._photo.height())
        return not self.stop_requested

    def close(self) -> None:
        try:
            self.label.configure(image="")
            self._photo = None  # freed now, in Tk's thread, not later by the garbage collector in another thread
            self.root.destroy()
        except self._tk.TclError:
            pass


class NotebookView:
    """A JPEG in the notebook's output, replaced in place frame after frame."""

    kind = "notebook"

    def __init__(self):
        self._handle = None

    def show(self, rgb: np.ndarray) -> bool:
        import cv2
        from IPython.display import Image, display

        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        img = Image(data=buf.tobytes(), format="jpeg")
        if self._handle is None:
            self._handle = display(img, display_id=True)
        else:
            self._handle.update(img)
        return True

    def close(self) -> None:
        pass


def open_view(display="auto"):
    """The view for ``display`` (or ``display`` itself when it is a view: an object with ``show`` and ``close``):
    ``window`` (OpenCV's if it has a GUI, else Tk), ``notebook``, ``none``, or ``auto``
    (inline inside Jupyter, else a window when a desktop exists, else none). A window that cannot open falls back to none
    with a message on stderr; it never aborts the process."""
    if not isinstance(display, str):
        return display
    if display not in DISPLAYS:
        raise ValueError(f"display must be one of {DISPLAYS}, got {display!r}")
    if display == "none":
        return NoView()
    if display == "notebook" or (display == "auto" and in_notebook()):
        return NotebookView()
    if opencv_gui_available():
        return OpenCVWindow()
    if tk_available():
        import tkinter

        try:
            return TkWindow()
        except tkinter.TclError as e:
            reason = f"cannot open a window ({e})"
    else:
        reason = "no display (DISPLAY unset) or no tkinter"
    if display == "auto":
        return NoView()
    print(f"{reason}: showing nothing (use display='notebook' in Jupyter)", file=sys.stderr)
    return NoView()
