"""Where labels and audio come from: a local folder, Spotify playlists, YouTube."""
