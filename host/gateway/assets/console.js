// Progressive enhancement only: every page works without this file.
// The deploy form's upload progress (htmx sends the form as an XHR and reports progress).
document.addEventListener("htmx:xhr:progress", (e) => {
  const bar = document.getElementById("deploy-progress");
  if (!bar || !e.target.closest || !e.target.closest("#deploy-form")) return;
  bar.hidden = false;
  if (e.detail.lengthComputable) bar.value = Math.round((e.detail.loaded / e.detail.total) * 100);
});
document.addEventListener("htmx:afterRequest", (e) => {
  const bar = document.getElementById("deploy-progress");
  if (bar && e.target.closest && e.target.closest("#deploy-form")) bar.hidden = true;
});
