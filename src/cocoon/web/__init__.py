"""The web app the client gateway serves at `/`: playground, what ran where, explorer,
wallet. Plain HTML, CSS and JavaScript modules from `static/` (no build step, no
CDN); the JSON it reads beyond the OpenAI API comes from `routes`."""
