-- Argo CD health check of obshell.oceanbase.com/ObStopRequest (argocd-cm key
-- resource.customizations.health.obshell.oceanbase.com_ObStopRequest; see docs/gitops.md).
-- Argo CD sets the global `obj` to the live object and reads the returned table's status and message.
--   no status yet, Pending, Submitted, Running -> Progressing
--   Succeeded                                  -> Healthy
--   Validated (a dryRun whose pre-check passed) -> Healthy: nothing was stopped, the message says so
--   AwaitingApproval (spec.approval Manual)    -> Suspended, until an ObStopApproval lets it go on
--   Failed                                     -> Degraded, with the controller's message
--   Failed, annotated obshell.oceanbase.com/failure-acknowledged: "true"
--                                              -> Healthy: a record kept without the alarm
--   Cancelled on request (CancelledOnRequest)  -> Healthy: someone asked for it, with what was stopped
--   Cancelled at the deadline                  -> Degraded
hs = {}
local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the ob-stop-operator controller to pick up the request"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end
local phase = status.phase
-- The controller's message; before it writes one, the Ready condition's.
local detail = status.message
if (detail == nil or detail == "") and status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" and condition.message ~= nil and condition.message ~= "" then
      detail = condition.message
    end
  end
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = detail or "The stop succeeded"
elseif phase == "Validated" then
  hs.status = "Healthy"
  hs.message = detail or "Dry run: the pre-check passed, nothing was stopped"
elseif phase == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = "Awaiting approval (an ObStopApproval): " .. (detail or "")
elseif phase == "Failed" then
  hs.status = "Degraded"
  if status.reason ~= nil and detail ~= nil then
    hs.message = status.reason .. ": " .. detail
  else
    hs.message = detail or status.reason or "The stop failed"
  end
  local annotations = obj.metadata and obj.metadata.annotations
  if annotations ~= nil and annotations["obshell.oceanbase.com/failure-acknowledged"] == "true" then
    hs.status = "Healthy"
    hs.message = "Failed (acknowledged): " .. hs.message
  end
elseif phase == "Cancelled" then
  if status.reason == "CancelledOnRequest" then
    hs.status = "Healthy"
  else
    hs.status = "Degraded"
  end
  hs.message = "Cancelled: " .. (detail or status.reason or "the stop was cancelled")
elseif phase == "Pending" or phase == "Submitted" or phase == "Running" then
  hs.status = "Progressing"
  local text = phase
  if status.progress ~= nil and status.progress ~= "" then
    text = text .. " (stage " .. status.progress .. ")"
  end
  if detail ~= nil and detail ~= "" then
    text = text .. ": " .. detail
  end
  hs.message = text
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
