//! The desktop camera scanner (docs/architecture.md "Apps"). On Linux, WebKitGTK disables
//! `getUserMedia` by default: this enables the media stream on the app's webview and answers
//! every permission request itself: a camera-only request is allowed; microphone, screen,
//! location, notifications and anything else are denied. Frames are decoded in Rust
//! (`scan_frame`), never in the page.
//!
//! `CAREKEY_TEST_MOCK_CAMERA=1` (the end-to-end test only) turns on WebKit's mock capture
//! devices, so the permission path can be tested on a machine without a camera.

/// What a permission request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaAsk {
    /// A camera.
    pub video: bool,
    /// A microphone.
    pub audio: bool,
    /// Whether it is a media request at all (not geolocation, notifications…).
    pub media: bool,
}

/// The rule: only a request for the camera alone is allowed.
pub fn allow(ask: MediaAsk) -> bool {
    ask.media && ask.video && !ask.audio
}

/// Enables the camera path on the main window's webview (Linux).
#[cfg(target_os = "linux")]
pub fn enable(window: &tauri::WebviewWindow) -> tauri::Result<()> {
    let mock = std::env::var_os("CAREKEY_TEST_MOCK_CAMERA").is_some_and(|v| v == "1");
    window.with_webview(move |wv| {
        use webkit2gtk::glib::prelude::Cast;
        use webkit2gtk::{
            PermissionRequestExt, SettingsExt, UserMediaPermissionRequest,
            UserMediaPermissionRequestExt, WebViewExt,
        };
        let view = wv.inner();
        if let Some(settings) = WebViewExt::settings(&view) {
            settings.set_enable_media_stream(true);
            if mock {
                settings.set_enable_mock_capture_devices(true);
            }
        }
        view.connect_permission_request(|_, request| {
            let ask = match request.downcast_ref::<UserMediaPermissionRequest>() {
                Some(m) => MediaAsk {
                    video: m.is_for_video_device(),
                    audio: m.is_for_audio_device(),
                    media: true,
                },
                None => MediaAsk {
                    video: false,
                    audio: false,
                    media: false,
                },
            };
            if allow(ask) {
                request.allow();
            } else {
                request.deny();
            }
            // Handled here: WebKit shows no prompt of its own.
            true
        });
    })
}

/// Other desktops: the platform webview asks the user itself.
#[cfg(not(target_os = "linux"))]
pub fn enable(_window: &tauri::WebviewWindow) -> tauri::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_camera_alone_is_allowed() {
        let ask = |video, audio, media| MediaAsk {
            video,
            audio,
            media,
        };
        assert!(allow(ask(true, false, true)));
        assert!(!allow(ask(true, true, true)), "camera with microphone");
        assert!(!allow(ask(false, true, true)), "microphone");
        assert!(!allow(ask(false, false, true)), "screen or other media");
        assert!(!allow(ask(false, false, false)), "not a media request");
        assert!(!allow(ask(true, false, false)));
    }
}
